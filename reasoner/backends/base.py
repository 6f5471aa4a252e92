"""The interface every model backend implements."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from reasoner.backends.errors import BackendError
from reasoner.types import Completion, GenerationRequest, StreamChunk

__all__ = ["Backend", "BackendError", "Delegating", "render_chat"]

_PREFILL_MARK = "\x00reasoner-prefill\x00"


def render_chat(
    messages: list[dict[str, Any]], prefill: str | None, template: Callable[[list[dict[str, Any]], bool], str]
) -> str:
    """The text a chat template makes of `messages`, `template(messages, add_generation_prompt)`,
    for backends that apply the model's template themselves. With a `prefill` (the content of a
    final assistant message) the turn is rendered around a marker and cut at it, so the assistant
    turn is left open whatever the template closes turns with, and the model continues it."""
    if prefill is None:
        return template(messages, True)
    text = template([*messages[:-1], {**messages[-1], "content": _PREFILL_MARK}], False)
    return text[: text.index(_PREFILL_MARK)] + prefill


class Backend(abc.ABC):
    """An async model client.

    `generate` may be called from many tasks at once; the backend bounds how many requests it has
    in flight itself (`max_in_flight`), so callers simply launch everything that is ready.
    """

    name: str = "backend"
    #: Whether one request with `n>1` returns n distinct samples. The engine merges sibling
    #: sampling nodes into one such request, so the prompt is prefilled once.
    supports_n: bool = False
    #: Whether requests may carry `tools` and choices come back with native `tool_calls`.
    supports_tools: bool = False
    #: Whether `json_schema` constrains the output (structured output / grammar).
    supports_json_schema: bool = False
    #: Whether a request asking for token log-probabilities gets them (the embedded model computes
    #: them only when loaded for it; servers return them when asked).
    logprobs: bool = True
    #: Tokens of prompt and completion the model holds, where the backend knows it.
    context_window: int | None = None
    #: Which thinking-budget controls of a request reach the model: "effort" (`reasoning_effort`)
    #: and/or "budget" (`max_reasoning_tokens`). Others are dropped, so a strategy reads this first.
    reasoning_controls: frozenset[str] = frozenset()

    def __init__(self, max_in_flight: int = 16) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        # Made per event loop: a backend may be built outside any loop, or reused across
        # several `asyncio.run` calls (each `reasoner.solve` is one), and a semaphore that once
        # made a caller wait belongs to that caller's loop.
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = asyncio.Semaphore(self.max_in_flight)
            self._slots_loop = loop
        return self._slots

    async def generate(self, request: GenerationRequest) -> Completion:
        async with self.slots:
            return await self._generate(request)

    @abc.abstractmethod
    async def _generate(self, request: GenerationRequest) -> Completion: ...

    #: Whether `stream` yields text as it is generated (else it yields the finished completion).
    supports_streaming: bool = False

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """The completion as it is generated: text chunks per choice, then one chunk holding the
        whole `Completion`. Leaving the loop early cancels the request. Backends that can stream
        override `_stream`; the rest yield their finished completion in one piece."""
        async with self.slots:
            chunks = self._stream(request)
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                # At once, not whenever the loop's finalizer gets to the abandoned generator: its
                # `finally` is what closes the connection and frees the request's slot.
                await chunks.aclose()  # type: ignore[attr-defined]

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        completion = await self._generate(request)
        for index, choice in enumerate(completion.choices):
            if choice.reasoning:
                yield StreamChunk(index=index, reasoning=choice.reasoning)
            yield StreamChunk(index=index, text=choice.text, token_logprobs=choice.token_logprobs)
        yield StreamChunk(completion=completion)

    async def aclose(self) -> None:
        """Release connections, threads or model memory."""

    def describe(self) -> dict[str, object]:
        """Settings safe to write into a trace or a run record (no secrets)."""
        return {
            "backend": self.name,
            "max_in_flight": self.max_in_flight,
            "supports_n": self.supports_n,
            "supports_tools": self.supports_tools,
            "supports_json_schema": self.supports_json_schema,
            **({"reasoning_controls": sorted(self.reasoning_controls)} if self.reasoning_controls else {}),
        }

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _inner(attr: str) -> property:
    return property(lambda self: getattr(self.inner, attr))


class Delegating(Backend):
    """A backend in front of another (the sample bank): what it can do is read off `inner` at each
    access, so what an HTTP backend learns after `connect()` (its model's tools, its schemas)
    shows through. Calls go to `inner`, which bounds its own requests in flight."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(max_in_flight=max(1, inner.max_in_flight))
        self.inner = inner

    name = _inner("name")  # type: ignore[assignment]
    supports_n = _inner("supports_n")  # type: ignore[assignment]
    supports_tools = _inner("supports_tools")  # type: ignore[assignment]
    supports_json_schema = _inner("supports_json_schema")  # type: ignore[assignment]
    supports_streaming = _inner("supports_streaming")  # type: ignore[assignment]
    logprobs = _inner("logprobs")  # type: ignore[assignment]
    context_window = _inner("context_window")  # type: ignore[assignment]
    reasoning_controls = _inner("reasoning_controls")  # type: ignore[assignment]

    # The wrapped backend bounds its own requests in flight; a wrapper adds no second bound.
    async def generate(self, request: GenerationRequest) -> Completion:
        return await self._generate(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in self._stream(request):
            yield chunk

    async def _generate(self, request: GenerationRequest) -> Completion:
        return await self.inner.generate(request)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()

    async def aclose(self) -> None:
        await self.inner.aclose()
