"""The end of a turn: into the conversation context and the metrics, stored, then told.

The order is the crash-safety promise: a ``turn_end`` the client saw is never lost, because the
turn is stored before it is sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from avatar.errors import AvatarError
from avatar.pipeline.context import ConversationContext
from avatar.pipeline.events import ClientGone, Emit, Error, TurnEnd
from avatar.pipeline.ports import TurnRecorder, root_cause
from avatar.pipeline.turn import Turn

log = logging.getLogger("avatar.session")
Metrics = dict[str, float | str | None]


class TurnFinisher:
    """Finishes the turns of one session (``on_turn_end`` feeds the Prometheus histograms)."""

    def __init__(
        self,
        session_id: str,
        context: ConversationContext,
        emit: Emit,
        recorder: TurnRecorder | None,
        on_turn_end: Callable[[Metrics, bool], None] | None,
    ) -> None:
        self.session_id, self.context, self._emit = session_id, context, emit
        self.recorder, self.on_turn_end = recorder, on_turn_end

    async def finish(self, turn: Turn, *, failed: bool = False) -> None:
        """Store the turn, then tell the client: a turn_end the client saw is never lost."""
        interrupted = turn.interrupted
        text = turn.heard_text() if interrupted else turn.reply_text.strip()
        self.context.add_user(turn.user_text)
        if not failed:
            self.context.add_assistant(text, interrupted=interrupted)
        if self.on_turn_end is not None:
            self.on_turn_end(turn.metrics, interrupted)
        if self.recorder is not None and turn.user_text:
            try:
                turn.stored_index = await self.recorder.record(
                    self.session_id, turn, turn.user_audio, list(turn.reply_audio), interrupted
                )
            except Exception:
                log.exception("could not store turn %s", turn.id)
                await self._emit(Error("storage_failed", "the turn could not be stored", turn.id))
        await self._emit(TurnEnd(turn.id, dict(turn.metrics), interrupted, text, turn.tts_mode))

    async def failed(self, turn: Turn, raised: Exception) -> None:
        """Tell the client what failed; an engine error still ends (and stores) the turn."""
        exc = root_cause(raised)  # the reply stage's TaskGroup wraps errors in a group
        if isinstance(exc, ClientGone):
            return
        with contextlib.suppress(ClientGone):
            if isinstance(exc, AvatarError):
                await self._emit(Error(exc.code, str(exc), turn_id=turn.id))
                await self.finish(turn, failed=True)
            else:
                log.exception("turn %s failed", turn.id, exc_info=raised)
                await self._emit(Error("internal_error", "the turn failed", turn_id=turn.id))

    async def mark_interrupted(self, turn: Turn, heard: str) -> None:
        """A stored turn was cut off while its audio still played: note what was heard."""
        if self.recorder is None or turn.stored_index is None:
            return
        try:
            await self.recorder.mark_interrupted(
                self.session_id, turn.stored_index, heard, turn.played_ms
            )
        except Exception:
            log.exception("could not mark turn %s interrupted", turn.id)
