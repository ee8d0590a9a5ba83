"""Thread settings reach the engines, so Whisper, llama.cpp and Piper can share two cores."""

from __future__ import annotations

import asyncio

from avatar.engines.llm.llamacpp import LlamaCppChat
from avatar.engines.tts.piper import PiperTts
from avatar.models.store import ModelStore
from avatar.settings import LlmSettings, TtsSlotSettings


def test_piper_runs_on_the_threads_it_is_given(model_store: ModelStore) -> None:
    cfg = TtsSlotSettings(engine="piper", model="piper-joe", threads=1)
    piper = PiperTts.from_settings(cfg, model_store)
    piper.load()
    try:
        assert piper._voice is not None
        assert piper._voice.session.get_session_options().intra_op_num_threads == 1

        async def speak() -> float:
            parts = [a async for a in piper.synthesize_stream("Hello there.", language="en")]
            return sum(a.duration_s for a in parts)

        assert asyncio.run(speak()) > 0.3  # still speaks
    finally:
        piper.shutdown()


def test_piper_keeps_its_own_session_without_a_thread_setting(model_store: ModelStore) -> None:
    piper = PiperTts.from_settings(TtsSlotSettings(engine="piper", model="piper-joe"), model_store)
    piper.load()
    try:
        assert piper._voice is not None
        assert piper._voice.session.get_session_options().intra_op_num_threads == 0  # ORT default
    finally:
        piper.shutdown()


def test_llama_reads_the_prompt_and_decodes_on_their_own_thread_counts(
    model_store: ModelStore,
) -> None:
    chat = LlamaCppChat.from_settings(LlmSettings(threads=1, batch_threads=2), model_store)
    assert (chat.threads, chat.batch_threads) == (1, 2)
    same = LlamaCppChat.from_settings(LlmSettings(threads=3, batch_threads=None), model_store)
    assert (same.threads, same.batch_threads) == (3, 3)
    default = LlmSettings()
    assert (default.threads, default.batch_threads) == (1, 2)


async def test_a_voice_reply_decodes_on_reply_threads_and_waits_while_tts_speaks(
    model_store: ModelStore,
) -> None:
    import llama_cpp

    from avatar.engines.base import ChatMessage, GenerationOptions
    from avatar.engines.cpu_turns import CpuTurns

    chat = LlamaCppChat.from_settings(
        LlmSettings(threads=1, batch_threads=2, reply_threads=2), model_store
    )
    assert LlmSettings().reply_threads == 2  # the default: a voice reply has both cores
    chat.load()
    try:
        assert chat._llama is not None
        ctx = chat._llama._ctx.ctx
        question = [ChatMessage("user", "Count from one to forty, in words.")]

        turns = CpuTurns()
        reply = chat.stream_chat(question, GenerationOptions(max_tokens=60, cpu_turns=turns))
        threads = []
        for _ in range(3):
            await anext(reply)
            threads.append(llama_cpp.llama_n_threads(ctx))
        assert set(threads) == {2}
        with turns.speaking():  # TTS synthesizes a chunk: the model stops at its next token
            await asyncio.sleep(0.2)  # the token it was decoding, and the one it waits before
            paused_at = chat.last_generation.deltas
            await asyncio.sleep(1.0)  # ~30 tokens' time on two threads
            assert chat.last_generation.deltas == paused_at
        rest = [delta async for delta in reply]  # its turn again: it goes on to the end
        assert len(rest) > 10 and chat.last_generation.deltas > paused_at
        assert llama_cpp.llama_n_threads(ctx) == 1  # back to the steady count after the reply

        plain = chat.stream_chat(question, GenerationOptions(max_tokens=8))  # REST: no turns
        async for _ in plain:
            assert llama_cpp.llama_n_threads(ctx) == 1
    finally:
        chat.shutdown()


class BusyEngine:
    """A ThreadedEngine whose calls burn a known amount of CPU on its thread."""

    def __init__(self) -> None:
        from avatar.engines.executor import ThreadedEngine

        class Busy(ThreadedEngine):
            name = "busy"

        self.engine = Busy()

    @staticmethod
    def burn(seconds: float) -> None:
        import time

        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    def chunks(self, _cancel: object) -> object:
        for _ in range(3):
            self.burn(0.01)
            yield b"x"


async def test_engine_cpu_time_is_counted_for_the_task_that_asked_and_its_children() -> None:
    from avatar.engines.executor import CpuMeter, metering

    busy, meter, other = BusyEngine(), CpuMeter(), CpuMeter()
    try:

        async def metered() -> None:
            metering(meter)
            await busy.engine.run(busy.burn, 0.05)

            async def child() -> None:
                assert [c async for c in busy.engine.stream(busy.chunks)] == [b"x"] * 3

            await asyncio.create_task(child())  # a task started after metering: counted too

        async def unmetered() -> None:
            await busy.engine.run(busy.burn, 0.05)

        metering(other)  # set in the test's own task: not seen by tasks started before ...
        await asyncio.gather(asyncio.create_task(metered()), asyncio.create_task(unmetered()))
        assert 0.08 <= meter.seconds < 0.2  # 50 ms + 3 x 10 ms, on the engine's thread
        assert 0.05 <= other.seconds < 0.1  # ... but by those started after: the unmetered one
    finally:
        busy.engine.shutdown()


async def test_a_dropped_speculative_reply_reports_the_cpu_it_used() -> None:
    from avatar.pipeline.generation import Generation
    from avatar.pipeline.speculation import HeldOutput, Speculation
    from avatar.testing.clock import FakeClock

    busy = BusyEngine()
    speculation = Speculation(Generation(), FakeClock())
    started = asyncio.Event()
    try:

        async def held_reply(_generation: int, _output: HeldOutput) -> None:
            await busy.engine.run(busy.burn, 0.04)  # a transcript, say
            started.set()
            await asyncio.sleep(60)  # the LLM, until the user goes on

        speculation.start(held_reply)
        await started.wait()
        await speculation.drop()
        metrics = speculation.turn_metrics()
        assert metrics["speculations_wasted"] == 1.0
        assert 40 <= metrics["speculation_wasted_cpu_ms"] < 150
        assert speculation.turn_metrics()["speculation_wasted_cpu_ms"] == 0.0  # counted once
        assert speculation.counters.metrics()["speculation_wasted_cpu_ms"] >= 40
    finally:
        busy.engine.shutdown()
