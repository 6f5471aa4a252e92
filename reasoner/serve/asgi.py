"""Responses that watch the connection: a client that hangs up cancels the work behind its
request (the strategy and every upstream request it has in flight) at once, not at the next write.

Starlette's own StreamingResponse notices a disconnect only when it next sends (ASGI 2.4), and a
plain Response never; a strategy may think for minutes without sending a byte.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from reasoner import secrets
from reasoner.serve.errors import APIError

log = logging.getLogger("reasoner.serve")


class ScrubbedJSON(JSONResponse):
    """JSON with every known secret masked: an upstream may echo its key in any field."""

    def render(self, content: Any) -> bytes:
        return secrets.scrub(json.dumps(content, ensure_ascii=False, separators=(",", ":"), default=str)).encode()


def error_response(exc: APIError) -> JSONResponse:
    return ScrubbedJSON(exc.body(), status_code=exc.status, headers=exc.headers)


def internal_error(exc: BaseException) -> APIError:
    """A failure the gateway did not foresee: logged (scrubbed), answered without a traceback."""
    log.error(secrets.scrub(f"unexpected {type(exc).__name__}: {exc}"))
    return APIError(500, f"the gateway failed: {type(exc).__name__}", type="server_error", code="internal_error")


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _race(work: Awaitable[Any], receive: Receive) -> tuple[bool, Any]:
    """(True, result) when `work` finished first, (False, None) when the client left first (work is
    then cancelled and awaited, so nothing it started outlives the request)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait([task, watcher], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if not task.done() or task.cancelled():
        return False, None
    return True, task.result()


class _Watching(Response):
    """A response that calls `on_done` once it is over, however it ended (sent, failed, or the
    client gone), so what it holds (a place in a queue) is given back."""

    def __init__(self, on_done: Callable[[], None] | None) -> None:
        super().__init__()
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.respond(scope, receive, send)
        finally:
            if self.on_done is not None:
                self.on_done()

    async def respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class Watched(_Watching):
    """A JSON answer computed by `work`, abandoned if the client hangs up first."""

    def __init__(self, work: Callable[[], Awaitable[dict[str, Any]]], on_done: Callable[[], None] | None = None) -> None:
        super().__init__(on_done)
        self.work = work

    async def respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def answer() -> Response:
            try:
                return ScrubbedJSON(await self.work())
            except APIError as exc:
                return error_response(exc)
            except Exception as exc:  # noqa: BLE001 - never a traceback to the client
                return error_response(internal_error(exc))

        finished, response = await _race(answer(), receive)
        if finished:
            await response(scope, receive, send)


class EventStream(_Watching):
    """`text/event-stream` from `start` (which may still fail with an error status) and then the
    event bytes it returns; writing stops and the producer is cancelled when the client leaves."""

    media_type = "text/event-stream"

    def __init__(self, start: Callable[[], Awaitable[AsyncIterator[bytes]]], on_done: Callable[[], None] | None = None) -> None:
        super().__init__(on_done)
        self.start = start

    async def respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            finished, events = await _race(self.start(), receive)
        except APIError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except Exception as exc:  # noqa: BLE001
            await error_response(internal_error(exc))(scope, receive, send)
            return
        if not finished:
            return
        finished, _ = await _race(self._send(events, send), receive)
        if not finished:
            await _close(events)

    async def _send(self, events: AsyncIterator[bytes], send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no")]  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            async for piece in events:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        except APIError as exc:
            await send({"type": "http.response.body", "body": _event(exc), "more_body": True})
        except Exception as exc:  # noqa: BLE001 - the status is sent: say it as an error event
            await send({"type": "http.response.body", "body": _event(internal_error(exc)), "more_body": True})
        finally:
            await _close(events)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _event(exc: APIError) -> bytes:
    return f"data: {json.dumps(exc.body())}\n\n".encode()


async def _close(events: AsyncIterator[bytes]) -> None:
    closer = getattr(events, "aclose", None)
    if closer is not None:
        await closer()
