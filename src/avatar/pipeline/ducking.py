"""Instant barge-in: quiet an audible reply at the first voiced frame, decide later.

Whether speech over a reply takes the turn is known only after the backchannel window (600 ms
of voice); the user should not hear the reply talk over them that long. :class:`ReplyDucker`
follows the endpointer frame by frame and says :class:`ReplyQuieted` at the VAD onset (before
the 250 ms confirmation), then :class:`ReplyResumed` when the voice proves a noise blip (never
confirmed) or a backchannel (confirmed, then silent for ``resume_after_ms`` while shorter than
the window). Speech that takes the turn is cut by the session's barge-in (``Interrupted``): the
ducker then forgets its quiet without a word.

Self-echo: a reply heard back through speakers can trip the VAD, and quieting it makes the echo
go away, which resumes it: a reply that pumps. Browsers' echo cancellation removes most of it;
for the rest, after ``max_false_alarms`` quiets that came to nothing in one reply the ducker
stops quieting that reply (its last resume says ``echo``), and barge-in works as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from avatar.pipeline.endpointing import EndpointState
from avatar.pipeline.events import ReplyQuieted, ReplyResumed, ResumeReason

DuckEvent = ReplyQuieted | ReplyResumed
_VOICED = (EndpointState.MAYBE_SPEECH, EndpointState.SPEECH)


@dataclass(frozen=True, slots=True)
class Hearing:
    """What the listener and the reply are doing after one microphone frame."""

    state: EndpointState
    speech_ms: float  # voiced time of the utterance in progress
    frame_ms: float
    reply_turn: str | None  # the turn whose reply is audible now (None: nothing audible)


class ReplyDucker:
    """Decides when the client should duck and un-duck the reply it is playing."""

    def __init__(
        self,
        *,
        backchannel_ms: float = 600.0,
        resume_after_ms: float = 400.0,
        max_false_alarms: int = 3,
    ) -> None:
        self.backchannel_ms = backchannel_ms
        self.resume_after_ms = resume_after_ms
        self.max_false_alarms = max_false_alarms
        self.quieted: str | None = None  # the turn whose reply is ducked now
        self._confirmed = False  # the voice that ducked it became confirmed speech
        self._silence_ms = 0.0
        self._alarms: tuple[str | None, int] = (None, 0)  # (turn, quiets that came to nothing)

    def step(self, now: Hearing) -> DuckEvent | None:
        """The event this frame calls for, if any."""
        if self.quieted is None:
            return self._maybe_quiet(now)
        if now.reply_turn != self.quieted:
            return self._ended(now)
        if now.state in _VOICED:
            self._silence_ms = 0.0
            self._confirmed |= now.state is EndpointState.SPEECH
            return None
        if now.state is EndpointState.IDLE:
            return self._resume(ResumeReason.BACKCHANNEL if self._confirmed else ResumeReason.NOISE)
        self._silence_ms += now.frame_ms  # trailing silence of a confirmed utterance
        if self._silence_ms >= self.resume_after_ms and now.speech_ms < self.backchannel_ms:
            return self._resume(ResumeReason.BACKCHANNEL)
        return None

    def forget(self) -> None:
        """The quieted reply was cut (``Interrupted`` tells the client): no resume follows."""
        self.quieted = None

    def _maybe_quiet(self, now: Hearing) -> ReplyQuieted | None:
        turn = now.reply_turn
        if turn is None or now.state not in _VOICED or self._muted(turn):
            return None
        self.quieted, self._confirmed, self._silence_ms = turn, False, 0.0
        return ReplyQuieted(turn)

    def _ended(self, now: Hearing) -> ReplyResumed | None:
        """The reply stopped being audible while ducked: finished (resume), or cut (silent)."""
        turn, self.quieted = self.quieted, None
        if now.reply_turn is None and turn is not None:
            return ReplyResumed(turn, ResumeReason.REPLY_ENDED)
        return None

    def _resume(self, reason: ResumeReason) -> ReplyResumed:
        turn, self.quieted = self.quieted, None
        assert turn is not None
        seen, count = self._alarms
        count = count + 1 if seen == turn else 1
        self._alarms = (turn, count)
        return ReplyResumed(turn, ResumeReason.ECHO if self._muted(turn) else reason)

    def _muted(self, turn: str) -> bool:
        seen, count = self._alarms
        return seen == turn and count >= self.max_false_alarms
