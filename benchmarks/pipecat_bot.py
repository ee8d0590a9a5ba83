"""Pipecat voice bot built from AVATAR's packaged models (runs in benchmarks/.venv-pipecat).

Not part of the AVATAR package: ``benchmarks/peers.py`` starts it as a subprocess. One client at a
time on ``ws://127.0.0.1:PORT``; binary frames in are PCM s16le mono 16 kHz, binary frames out are
the reply audio (PCM s16le mono 22,050 Hz, Piper's own rate, so nothing is resampled).

Stock Pipecat services, configured to match AVATAR (see benchmarks/README.md):
- ``SileroVADAnalyzer`` (Pipecat's bundled silero_vad.onnx, onnxruntime) with AVATAR's threshold
  and start time, stop time given by ``--vad-stop``;
- turn end: ``--turn timeout`` = VAD stop (``SpeechTimeoutUserTurnStopStrategy``, extra timeout
  given by ``--turn-timeout``); ``--turn smart`` = Pipecat's own default and the setup of its
  examples: ``TurnAnalyzerUserTurnStopStrategy`` with the local smart-turn v3 model
  (``LocalSmartTurnAnalyzerV3``, the ONNX file shipped in the wheel) asked at each VAD stop, the
  turn ending when it says complete and the transcript is in (or after its 3 s silence timeout);
- ``WhisperSTTService`` on AVATAR's joined whisper-base folder, int8, 2 threads, English; its
  ``transcribe`` call is given AVATAR's decoding options (greedy, no timestamps) because Pipecat's
  ``run_stt`` leaves faster-whisper's defaults (beam 5, timestamps) and exposes no option for them;
- ``OpenAILLMService`` against the same llama_cpp.server every system in the benchmark uses;
- ``PiperTTSService`` on AVATAR's packaged piper-joe .onnx (loaded from its folder, no download).

Pass-through probes write one JSON line per pipeline event (monotonic clock, shared with the
driver on Linux) to ``--events`` so the driver can split the latency into stages; smart-turn's
verdicts are written there too (``smart_turn``: complete or not, its probability, its inference
time; ``smart_turn_timeout``: its silence timeout ended the turn). A text frame ``reset`` from the
client empties the conversation (the driver's pause set: every question on its own, as AVATAR's
are in fresh sessions).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

from loguru import logger
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesUpdateFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from pipecat.turns.user_stop import (
    SpeechTimeoutUserTurnStopStrategy,
    TurnAnalyzerUserTurnStopStrategy,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

IN_RATE, OUT_RATE = 16_000, 22_050


class RawPcmSerializer(FrameSerializer):
    """Binary PCM in and out; everything else is dropped (the benchmark needs only audio)."""

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            return InputAudioRawFrame(audio=data, sample_rate=IN_RATE, num_channels=1)
        if data == "reset":  # a new conversation: the user aggregator empties the context
            return LLMMessagesUpdateFrame(messages=[], run_llm=False)
        return None


def emit(sink: Any, at: str, event: str, **extra: Any) -> None:
    row = {"t": time.monotonic(), "at": at, "ev": event, **extra}
    sink.write(json.dumps(row) + "\n")
    sink.flush()


class LoggedSmartTurn(LocalSmartTurnAnalyzerV3):
    """Stock ``LocalSmartTurnAnalyzerV3`` (bundled model, Pipecat's defaults); writes each
    verdict to the events file."""

    def __init__(self, *, sink: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sink = sink

    def append_audio(self, buffer: bytes, is_speech: bool) -> EndOfTurnState:
        state = super().append_audio(buffer, is_speech)
        if state == EndOfTurnState.COMPLETE:  # its silence timeout (stop_secs), no inference
            emit(self._sink, "smart-turn", "smart_turn_timeout")
        return state

    async def analyze_end_of_turn(self) -> tuple[EndOfTurnState, Any]:
        state, metrics = await super().analyze_end_of_turn()
        if metrics is not None:  # None: nothing buffered (e.g. just after a timeout)
            emit(
                self._sink,
                "smart-turn",
                "smart_turn",
                complete=state == EndOfTurnState.COMPLETE,
                probability=round(metrics.probability, 4),
                inference_ms=round(metrics.e2e_processing_time_ms, 1),
            )
        return state, metrics


class Probe(FrameProcessor):
    """Passes every frame on; writes the time of the frames that mark a stage."""

    def __init__(self, label: str, sink: Any) -> None:
        super().__init__(name=f"probe-{label}")
        self._label = label
        self._sink = sink
        self._seen: set[int] = set()
        self._llm_armed = False
        self._tts_armed = False

    def _emit(self, event: str, **extra: Any) -> None:
        emit(self._sink, self._label, event, **extra)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if frame.id not in self._seen:
            if isinstance(frame, VADUserStoppedSpeakingFrame):
                self._seen.add(frame.id)
                self._emit("vad_stop")
            elif isinstance(frame, VADUserStartedSpeakingFrame):
                self._seen.add(frame.id)
                self._emit("vad_start")
            elif isinstance(frame, TranscriptionFrame):
                self._seen.add(frame.id)
                self._emit("transcript", text=frame.text)
            elif isinstance(frame, UserStoppedSpeakingFrame):
                self._seen.add(frame.id)
                # One turn end is seen by several probes, and a broadcast frame has a sibling
                # going the other way: the driver counts turns by the pair's smaller id.
                sibling = getattr(frame, "broadcast_sibling_id", None)
                self._emit("turn_end", id=min(frame.id, sibling or frame.id))
            elif isinstance(frame, LLMFullResponseStartFrame):
                self._llm_armed = True
            elif isinstance(frame, LLMTextFrame):
                self._seen.add(frame.id)
                self._emit("llm_first_text" if self._llm_armed else "llm_text", text=frame.text)
                self._llm_armed = False
            elif isinstance(frame, LLMFullResponseEndFrame):
                self._seen.add(frame.id)
                self._emit("llm_end")
            elif isinstance(frame, TTSStartedFrame):
                self._tts_armed = True
            elif isinstance(frame, TTSAudioRawFrame) and self._tts_armed:
                self._tts_armed = False
                self._emit("tts_first_audio")
        await self.push_frame(frame, direction)


class MatchedWhisper(WhisperSTTService):
    """Stock WhisperSTTService; only the model load gets AVATAR's thread count and decoding."""

    def __init__(self, *, threads: int, **kwargs: Any) -> None:
        self._threads = threads  # read by _load(), which the base __init__ calls
        super().__init__(**kwargs)

    def _load(self) -> None:
        from faster_whisper import WhisperModel

        model = WhisperModel(
            str(self._settings.model),
            device=self._device,
            compute_type=self._compute_type,
            cpu_threads=self._threads,
        )
        # AVATAR decodes greedily without timestamps and without conditioning on earlier text
        # (src/avatar/engines/stt/whisper.py); Pipecat's run_stt calls transcribe() with defaults.
        model.transcribe = functools.partial(  # type: ignore[method-assign]
            model.transcribe,
            beam_size=1,
            without_timestamps=True,
            condition_on_previous_text=False,
        )
        self._model = model


def build(args: argparse.Namespace, sink: Any) -> tuple[PipelineWorker, Any]:
    transport = SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=IN_RATE,
            audio_out_sample_rate=OUT_RATE,
            add_wav_header=False,
            serializer=RawPcmSerializer(),
            allowed_origins=[],
        ),
        host="127.0.0.1",
        port=args.port,
    )
    stt = MatchedWhisper(
        threads=args.threads,
        device="cpu",
        compute_type="int8",
        settings=WhisperSTTService.Settings(
            model=str(args.whisper), language=Language.EN, no_speech_prob=0.6
        ),
    )
    llm = OpenAILLMService(
        api_key="not-needed",
        base_url=args.llm_url,
        settings=OpenAILLMService.Settings(
            model=args.llm_model,
            system_instruction=args.system_prompt,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
        ),
    )
    voice = Path(args.piper)
    tts = PiperTTSService(
        download_dir=voice.parent,
        settings=PiperTTSService.Settings(voice=voice.name.removesuffix(".onnx")),
    )
    vad = SileroVADAnalyzer(
        params=VADParams(
            confidence=args.vad_threshold,
            start_secs=args.vad_start,
            stop_secs=args.vad_stop,
            min_volume=0.0,
        )
    )
    if args.turn == "smart":
        stop = [TurnAnalyzerUserTurnStopStrategy(turn_analyzer=LoggedSmartTurn(sink=sink))]
    else:
        stop = [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=args.turn_timeout)]
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=vad,
            user_turn_strategies=UserTurnStrategies(stop=stop),
        ),
    )
    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            Probe("stt", sink),
            aggregators.user(),
            Probe("user", sink),
            llm,
            Probe("llm", sink),
            tts,
            Probe("tts", sink),
            transport.output(),
            aggregators.assistant(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=IN_RATE, audio_out_sample_rate=OUT_RATE),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    return worker, transport


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--whisper", required=True, help="CTranslate2 Whisper folder")
    p.add_argument("--piper", required=True, help="Piper voice .onnx (with .onnx.json beside)")
    p.add_argument("--llm-url", required=True, help="OpenAI-compatible base URL (…/v1)")
    p.add_argument("--llm-model", default="qwen2.5-0.5b-instruct")
    p.add_argument("--system-prompt", required=True)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vad-threshold", type=float, default=0.5)
    p.add_argument("--vad-start", type=float, default=0.25)
    p.add_argument("--vad-stop", type=float, default=0.5)
    p.add_argument(
        "--turn",
        choices=("timeout", "smart"),
        default="timeout",
        help="turn end: VAD stop + --turn-timeout, or the local smart-turn v3 analyzer",
    )
    p.add_argument("--turn-timeout", type=float, default=0.0, help="with --turn timeout")
    p.add_argument("--events", required=True, help="JSON-lines file for stage timestamps")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args()

    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    with open(args.events, "a", encoding="utf-8") as sink:
        asyncio.run(serve(args, sink))


async def serve(args: argparse.Namespace, sink: Any) -> None:
    worker, transport = build(args, sink)

    @transport.event_handler("on_websocket_ready")
    async def _ready(_transport: Any) -> None:
        print("READY", flush=True)

    @transport.event_handler("on_client_disconnected")
    async def _gone(_transport: Any, _ws: Any) -> None:
        await worker.cancel()

    await WorkerRunner(handle_sigint=True).run(worker)


if __name__ == "__main__":
    main()
