"""How an HTTP backend's requests reach a server, in layers that wrap each other as httpx's
transports do: `Retrying(Router([HTTPPool(url), ...]))`. The backend speaks the OpenAI protocol and
hands each request, as a `Call`, to the transport it is given.

- `HTTPPool`: one server URL; sharded httpx connection pools; bodies capped in size; a stall
  timeout (no bytes for `stall_timeout_s`); failures mapped onto the `errors` hierarchy.
- `Router` (routing.py): several replicas of one model, least-loaded, with failover.
- `Retrying` (retry.py): exponential backoff with full jitter, `Retry-After`, an overall deadline.
"""

from __future__ import annotations

import abc
import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from reasoner import secrets
from reasoner.backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeoutError,
    MalformedResponseError,
    from_status,
    retry_after_seconds,
)

# httpcore's pool does work quadratic in its connection count on every request (it recounts all
# connections for each idle one); at 64 connections that costs more CPU than the request itself.
# Several small clients keep it flat: 1000 requests at 64 in flight went from ~7 s to ~1.5 s.
CONNECTIONS_PER_CLIENT = 4
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_MAX_QUOTE = 300


@dataclass(frozen=True)
class Call:
    """One HTTP exchange as the protocol layer wants it. `parse` turns a 2xx body into the result
    (raising `MalformedResponseError`, which is retried like a network failure); a `stream` call
    returns as soon as the status line is in, its body read line by line."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    parse: Callable[[bytes], Any] | None = None
    stream: bool = False

    @property
    def where(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Reply:
    """A 2xx answer: `data` is what `Call.parse` made of the body; a stream's body is `lines()`."""

    status: int
    headers: httpx.Headers
    data: Any = None
    _lines: AsyncIterator[str] | None = None
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def lines(self) -> AsyncIterator[str]:
        if self._lines is None:
            raise TypeError("only a streamed reply has lines")
        return self._lines

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def aclose(self) -> None:
        """Close the stream (the server sees the connection end and stops) and release its slot."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            await closer()


class Transport(abc.ABC):
    """Sends a `Call`; raises a `BackendError` subclass when it fails."""

    @abc.abstractmethod
    async def send(self, call: Call) -> Reply: ...

    async def aclose(self) -> None:
        """Release connections."""


@dataclass
class _Shard:
    client: httpx.AsyncClient
    capacity: int
    busy: int = 0


class HTTPPool(Transport):
    """One server, over several small httpx clients (see CONNECTIONS_PER_CLIENT).

    `http_transport` replaces the network under the clients (an `httpx.MockTransport` in tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        max_connections: int = 64,
        connect_timeout: float = 10.0,
        stall_timeout_s: float = 120.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be at least 1, got {max_response_bytes}")
        if stall_timeout_s <= 0:
            raise ValueError(f"stall_timeout_s must be positive, got {stall_timeout_s}")
        self.url = base_url
        self.headers = dict(headers or {})
        self.max_connections = max_connections
        # httpx's read timeout bounds each wait for bytes, which is exactly a stall timeout.
        self.timeout = httpx.Timeout(connect=connect_timeout, read=stall_timeout_s, write=stall_timeout_s, pool=None)
        self.max_response_bytes = max_response_bytes
        self.http_transport = http_transport
        self._pool: list[_Shard] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def _shards(self) -> list[_Shard]:
        loop = asyncio.get_running_loop()
        # Pooled connections belong to the loop that opened them, so a backend reused under a
        # new asyncio.run() needs fresh clients.
        if not self._pool or self._loop is not loop or self._pool[0].client.is_closed:
            # Loading the CA bundle is the slow part of making a client: do it once for all of them.
            tls = httpx.create_ssl_context()
            sizes = [CONNECTIONS_PER_CLIENT] * (self.max_connections // CONNECTIONS_PER_CLIENT)
            if self.max_connections % CONNECTIONS_PER_CLIENT:
                sizes.append(self.max_connections % CONNECTIONS_PER_CLIENT)
            self._pool = [
                _Shard(
                    httpx.AsyncClient(
                        base_url=self.url,
                        headers=self.headers,
                        timeout=self.timeout,
                        verify=tls,
                        transport=self.http_transport,
                        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                    ),
                    capacity=size,
                )
                for size in sizes
            ]
            self._loop = loop
        return self._pool

    async def send(self, call: Call) -> Reply:
        shard = max(self._shards(), key=lambda s: s.capacity - s.busy)
        shard.busy += 1
        streaming = False
        try:
            with _mapped_errors(call):
                request = shard.client.build_request(call.method, call.path, json=call.json)
                response = await shard.client.send(request, stream=True)
                if call.stream and response.status_code < 400:
                    streaming = True
                    return self._streamed(call, response, shard)
                try:
                    body = await self._read(response)
                finally:
                    await response.aclose()
            if response.status_code >= 400:
                detail = quote(server_message(body))
                raise from_status(response.status_code, detail, retry_after_seconds(response.headers))
            return Reply(response.status_code, response.headers, data=_parsed(call, body))
        finally:
            if not streaming:
                shard.busy -= 1

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise self._too_big()
        parts: list[bytes] = []
        size = 0
        async for piece in response.aiter_bytes():
            size += len(piece)
            if size > self.max_response_bytes:
                raise self._too_big()
            parts.append(piece)
        return b"".join(parts)

    def _too_big(self) -> MalformedResponseError:
        error = MalformedResponseError(f"the response body is over max_response_bytes ({self.max_response_bytes:,} bytes)")
        error.retryable = False
        return error

    def _streamed(self, call: Call, response: httpx.Response, shard: _Shard) -> Reply:
        async def lines() -> AsyncIterator[str]:
            size = 0
            with _mapped_errors(call):
                async for line in response.aiter_lines():
                    size += len(line) + 1
                    if size > self.max_response_bytes:
                        raise self._too_big()
                    yield line

        released = False

        async def close() -> None:
            nonlocal released
            if not released:
                released = True
                shard.busy -= 1
                await response.aclose()

        reply = Reply(response.status_code, response.headers, _lines=lines())
        reply.on_close(close)
        return reply

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        pool, self._pool = self._pool, []
        if self._loop is not loop:
            return  # closing needs the loop that opened the connections, and that one has ended
        for shard in pool:
            if not shard.client.is_closed:
                await shard.client.aclose()


class _mapped_errors:
    """httpx's exceptions as `BackendError`s: a stall or connect timeout, a lost connection, or
    (not retried) a client-side error such as a bad URL."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, BackendError) or not isinstance(exc, httpx.HTTPError):
            return
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        cause = secrets.scrub(cause)
        if isinstance(exc, httpx.TimeoutException):
            raise BackendTimeoutError(cause) from None
        if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
            raise BackendConnectionError(cause) from None
        raise BackendError(f"{self.call.where} failed: {cause}") from None


def _parsed(call: Call, body: bytes) -> Any:
    if call.parse is None:
        return body
    try:
        return call.parse(body)
    except MalformedResponseError as exc:
        raise MalformedResponseError(f"malformed response body ({exc}): {quote(body.decode('utf-8', 'replace'))}") from None


def quote(text: str) -> str:
    """Server text fit for a message: scrubbed first, so truncation cannot leave half a key."""
    text = " ".join(secrets.scrub(text).split())
    return text if len(text) <= _MAX_QUOTE else text[:_MAX_QUOTE] + "..."


def server_message(body: bytes) -> str:
    """The error message of an OpenAI-style error body, else the body itself."""
    text = body.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)
    except (ValueError, AttributeError):
        pass
    return text or "(empty body)"
