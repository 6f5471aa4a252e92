"""The fake OpenAI server's wire: the faults it can be told to commit, and HTTP/1.1 responses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, NamedTuple


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, used up by the next completion request the server receives."""

    kind: Literal["status", "delay", "malformed", "drop", "endless", "trickle"]
    code: int = 200
    body: str | dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    seconds: float = 0.0

    @classmethod
    def status(
        cls, code: int, body: str | dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Fault:
        """Answer with this status; `body` defaults to an OpenAI-style error object."""
        return cls("status", code=code, body=body, headers=headers)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after `seconds` (to provoke a client read timeout)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def malformed(cls, body: str | None = None) -> Fault:
        """Answer 200 with a body that is not a completion (truncated JSON unless given)."""
        return cls("malformed", body=body)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @classmethod
    def endless(cls) -> Fault:
        """Answer 200 with a body that never ends (64 KiB writes, as fast as the client reads)."""
        return cls("endless")

    @classmethod
    def trickle(cls, seconds: float) -> Fault:
        """Answer 200 with a body of a megabyte, one byte every `seconds`."""
        return cls("trickle", seconds=seconds)


@dataclass
class RecordedRequest:
    method: str
    path: str
    #: Header names lower-cased.
    headers: dict[str, str]
    #: The parsed JSON body; None when there was none or it was not JSON.
    body: Any


class Response(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


class Streamed(NamedTuple):
    """A 200 whose body is written piece by piece (no Content-Length; the connection closes)."""

    headers: dict[str, str]
    pieces: AsyncIterator[bytes]


async def endless() -> AsyncIterator[bytes]:
    piece = b" " * 65536
    while True:
        yield piece


async def trickle(seconds: float) -> AsyncIterator[bytes]:
    for _ in range(1_000_000):
        await asyncio.sleep(seconds)
        yield b" "


def json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


def error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    return json_response(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


def fault_response(fault: Fault) -> Response:
    if isinstance(fault.body, str):
        return Response(fault.code, fault.body.encode(), {"Content-Type": "text/plain", **(fault.headers or {})})
    payload = fault.body
    if payload is None:
        kind = "server_error" if fault.code >= 500 else "invalid_request_error"
        kind = "rate_limit_error" if fault.code == 429 else kind
        payload = {"error": {"message": f"injected HTTP {fault.code}", "type": kind, "param": None, "code": None}}
    return json_response(fault.code, payload, fault.headers)


def serialise(response: Response, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    headers = {"Content-Type": "application/json", **response.headers}
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(response.body)}")
    lines.append("Connection: " + ("keep-alive" if keep_alive else "close"))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body
