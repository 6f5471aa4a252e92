"""A view of the gateway's backend for one strategy run that keeps the upstream errors it saw,
so a failed run is answered by the type of its cause (429, 502, 504), not by words in a message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from reasoner.backends.base import Backend
from reasoner.backends.errors import BackendError
from reasoner.types import Completion, GenerationRequest, StreamChunk


def _inner_attribute(attr: str) -> Any:
    """A read-only property that reads `attr` off `self.inner` at each access."""
    return property(lambda self: getattr(self.inner, attr))


class Recording(Backend):
    """Delegates everything to `inner` (its in-flight bound included); remembers BackendErrors."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.max_in_flight)
        self.inner = inner
        self.errors: list[BackendError] = []

    # Capabilities are read from the inner backend each time: an HTTP backend learns them as it goes.
    name = _inner_attribute("name")
    supports_n = _inner_attribute("supports_n")
    supports_tools = _inner_attribute("supports_tools")
    supports_json_schema = _inner_attribute("supports_json_schema")
    supports_streaming = _inner_attribute("supports_streaming")

    def __getattr__(self, attr: str) -> Any:  # context_window, n_ctx, logprobs, model, ...
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(attr)
        return getattr(inner, attr)

    async def generate(self, request: GenerationRequest) -> Completion:
        try:
            return await self.inner.generate(request)
        except BackendError as exc:
            self.errors.append(exc)
            raise

    async def _generate(self, request: GenerationRequest) -> Completion:
        return await self.generate(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        try:
            async for chunk in self.inner.stream(request):
                yield chunk
        except BackendError as exc:
            self.errors.append(exc)
            raise

    def describe(self) -> dict[str, object]:
        return self.inner.describe()
