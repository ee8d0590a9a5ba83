"""The /ws/chat endpoint: authenticate before accept, then pump messages through a session.

Outbound events go through a bounded queue drained by one sender task with a send deadline, so
a client that stops reading is closed without slowing any other session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from avatar.api.state import AppState, connection_state
from avatar.api.ws import handshake
from avatar.api.ws.codec import encode
from avatar.api.ws.protocol import ClientMessage, ProtocolError, deliver, parse_binary, parse_text
from avatar.errors import AvatarError
from avatar.pipeline.events import ClientGone, Error, SessionEvent, SessionStarted
from avatar.pipeline.session import VoiceSession

log = logging.getLogger("avatar.ws")
router = APIRouter()

OUTBOX = 256
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Close codes: 1008 policy (auth/origin), 1013 try again later (full), 1009 too big,
# 1001 going away (idle, shutdown), 1011 server error.


@router.websocket("/ws/chat")
async def ws_chat(ws: WebSocket) -> None:
    state = connection_state(ws)
    if (why := handshake.refusal(ws, state)) is not None:  # before accepting: say why, as HTTP
        await handshake.refuse(ws, why)
        return
    client = ws.client.host if ws.client else "unknown"
    refusal = await state.sessions.acquire(client)
    if refusal:  # accepted first so the client sees the code (a refused handshake is a bare 403)
        await ws.accept()
        await ws.close(code=1013, reason=refusal)
        return
    try:
        await ws.accept()
        await _serve(ws, state)
    finally:
        await state.sessions.release(client)


async def close_sessions(state: AppState) -> None:
    """Shutdown: end every voice session (storing what was heard) and close with 1001."""
    for session in list(state.open_sessions.values()):
        with contextlib.suppress(Exception):
            await session.close()
            await session.websocket.close(code=1001, reason="server shutting down")


async def _serve(ws: WebSocket, state: AppState) -> None:
    requested = ws.query_params.get("session_id", "")
    session_id = requested if _SESSION_ID.match(requested) else uuid.uuid4().hex
    deadline = state.settings.send_deadline_s
    admission = state.services.gpu_admission
    seat = None
    if admission is not None:
        try:
            seat = admission.admit(session_id)  # the emptier GPU; refused when all are full
        except AvatarError as exc:  # the error event first, then the close code
            with contextlib.suppress(Exception):
                refusal = json.dumps(encode(Error(exc.code, str(exc))))
                await asyncio.wait_for(ws.send_text(refusal), deadline)
            await ws.close(code=1013, reason="every GPU is full")
            return
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=OUTBOX)
    sender = asyncio.create_task(_drain(ws, outbox, deadline))

    async def send(event: SessionEvent) -> None:
        if sender.done():
            raise ClientGone("the client is gone")
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # arrives as the put completes, and a reply stage cancelled that way (its LLM failed
            # as its TTS sent audio) waits forever on a queue nobody fills.
            async with asyncio.timeout(deadline):
                await outbox.put(encode(event))
        except TimeoutError:
            sender.cancel()
            raise ClientGone("the client stopped reading") from None

    session = VoiceSession(
        state.hub,
        session_id,
        send,
        recorder=state.services.recorder,
        voices=state.services.voices,
        on_turn_end=state.services.metrics.observe,
        likely_language=await _last_language(state),
    )
    session.websocket = ws
    state.open_sessions[session_id] = session
    try:
        started = SessionStarted(session_id, session.public_config())
        if seat is not None and seat.gpu_index is not None:
            started = replace(started, gpu_index=seat.gpu_index, gpu_reason=seat.reason)
        await send(started)
        receiver = asyncio.create_task(
            _receive_loop(ws, session, send, state.settings.session_idle_timeout_s)
        )
        # Whichever ends first ends the session: the client leaving, or the sender giving up
        # on a client that stopped reading.
        await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, ClientGone):
            await receiver
    except (WebSocketDisconnect, ClientGone):
        pass
    finally:
        state.open_sessions.pop(session_id, None)
        if admission is not None:
            admission.release(session_id)
        with contextlib.suppress(Exception):
            await session.close()
        if not sender.done():
            with contextlib.suppress(asyncio.QueueFull):
                outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender, 2.0)
        sender.cancel()


async def _last_language(state: AppState) -> str | None:
    """The newest stored turn's language; None (detect) when the history cannot be read."""
    try:
        return await state.services.recorder.last_language()
    except Exception:
        log.warning("could not read the last conversation's language", exc_info=True)
        return None


async def _receive_loop(ws: WebSocket, session: VoiceSession, send: Any, idle_s: float) -> None:
    while True:
        try:
            message = await asyncio.wait_for(ws.receive(), idle_s)
        except TimeoutError:
            await ws.close(code=1001, reason="idle timeout")
            return
        if message["type"] == "websocket.disconnect":
            return
        try:
            msg: ClientMessage
            if message.get("bytes") is not None:
                msg = parse_binary(message["bytes"])
            else:
                msg = parse_text(message.get("text") or "")
            await deliver(session, msg)
        except ProtocolError as exc:
            await send(Error(exc.code, exc.message))
        except AvatarError as exc:
            await send(Error(exc.code, str(exc)))


async def _drain(
    ws: WebSocket, outbox: asyncio.Queue[dict[str, Any] | None], deadline: float
) -> None:
    """The only writer to the socket; gives up (closing it) when a send outlasts the deadline."""
    while (event := await outbox.get()) is not None:
        if ws.application_state != WebSocketState.CONNECTED:
            return
        try:
            async with asyncio.timeout(deadline):  # as in send(): see there
                await ws.send_text(json.dumps(event, ensure_ascii=False))
        except TimeoutError:
            log.warning("closing a client that stopped reading")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1008, reason="client too slow"), 1.0)
            return
        except Exception:
            return
