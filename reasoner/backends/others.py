"""The other models a strategy or verifier asks besides the engine's (mixture's proposers and its
aggregator, `judge:MODEL_SPEC`), each opened from its spec once per event loop and kept.

Opening one per call would repeat its `connect()` for every judgement or question (for a vLLM
server: its model cards and a tool probe, two requests before the real one) and its connection
setup. The backends are closed when the loop ends: `asyncio.run` (and uvicorn, and pytest's loops)
close every live async generator before closing the loop, and a generator parked at its first
`yield` holds each loop's backends; its `finally` closes them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator

from reasoner.backends.base import Backend
from reasoner.types import Completion, GenerationRequest


class _Opened:
    def __init__(self) -> None:
        self.backends: dict[str, asyncio.Task[Backend]] = {}
        self.closer: AsyncIterator[None] | None = None  # held here: the loop keeps its generators weakly


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Opened] = weakref.WeakKeyDictionary()


async def other_backend(spec: str) -> Backend:
    """The backend `spec` names, opened on this loop's first call for it. A failed open is not
    kept, so a later call tries again (the server may be up by then)."""
    from reasoner.backends.spec import open_backend

    loop = asyncio.get_running_loop()
    opened = _BY_LOOP.get(loop)
    if opened is None:
        opened = _BY_LOOP[loop] = _Opened()
        opened.closer = _close_at_loop_end(opened)
        await opened.closer.__anext__()
    task = opened.backends.get(spec)
    if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
        # A task, so concurrent first calls open it once, and a caller cancelled meanwhile
        # does not cancel the open the others wait on.
        task = opened.backends[spec] = loop.create_task(open_backend(spec))
    return await asyncio.shield(task)


async def generate_on(spec: str, request: GenerationRequest) -> Completion:
    """`request` to the model `spec` names; where that backend ignores n, as n single requests
    with distinct seeds, as the engine sends them."""
    backend = await other_backend(spec)
    if request.n == 1 or backend.supports_n:
        return await backend.generate(request)
    return Completion.joined(await asyncio.gather(*(backend.generate(r) for r in request.singles())))


async def _close_at_loop_end(opened: _Opened) -> AsyncIterator[None]:
    try:
        yield
    finally:
        # The tasks hold the loop, so the weak key would never let go of it: the entry goes here.
        _BY_LOOP.pop(asyncio.get_running_loop(), None)
        for task in opened.backends.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                await task.result().aclose()
        opened.backends.clear()
