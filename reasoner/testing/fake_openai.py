"""A real OpenAI-compatible HTTP server, for tests and benchmarks, that can be told to misbehave.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) over asyncio streams, so it
needs nothing beyond the standard library and clients exercise their real network stack.

    with FakeOpenAIServer(latency_s=0.05) as server:
        server.add_faults(Fault.status(429, headers={"Retry-After": "1"}), Fault.drop())
        ...  # point a client at server.base_url ("http://127.0.0.1:PORT/v1")

As a separate process (keeps the server's CPU out of a client benchmark):

    python -m reasoner.testing.fake_openai --port 0 --latency 0.05   # first stdout line: the base URL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, NamedTuple

#: Decides the text (or the tool calls) of choice `index` for a parsed request body.
Responder = Callable[[dict[str, Any], int], "str | FakeToolCalls"]
#: The log-probability given to every token of choice `index`, whose text is `text`.
LogprobFn = Callable[[dict[str, Any], int, str], float]

# Whitespace-led words: a cheap stand-in for tokens whose concatenation gives back the text.
_TOKEN = re.compile(r"\s*\S+")
_TRUNCATED_JSON = b'{"id": "cmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'
_HEADER_LIMIT = 64 * 1024


def echo_responder(body: dict[str, Any], index: int) -> str:
    """The default reply: the last few words of the prompt, tagged with the sample index."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        last = str(messages[-1].get("content") or "")
    else:
        last = _prompt_text(body.get("prompt"))
    return f"Echo {index}: " + " ".join(last.split()[-20:])


@dataclass(frozen=True)
class FakeToolCalls:
    """A responder's reply that calls tools: [(name, arguments), ...] plus optional text."""

    tool_calls: list[tuple[str, dict[str, Any]]]
    content: str = ""


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, used up by the next completion request the server receives."""

    kind: Literal["status", "delay", "malformed", "drop"]
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


@dataclass
class RecordedRequest:
    method: str
    path: str
    #: Header names lower-cased.
    headers: dict[str, str]
    #: The parsed JSON body; None when there was none or it was not JSON.
    body: Any


class _Response(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


class _BadRequest(Exception):
    pass


class FakeOpenAIServer:
    """Serves /v1/chat/completions, /v1/completions and /v1/models on 127.0.0.1.

    Every received request is kept in `requests`; `in_flight` and `peak_in_flight` count the
    completion requests being handled at once, so tests can check a client's concurrency bound.
    """

    def __init__(
        self,
        models: str | Sequence[str] = "fake-model",
        *,
        responder: Responder | None = None,
        logprob_fn: LogprobFn | None = None,
        latency_s: float = 0.0,
        faults: Iterable[Fault] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
    ) -> None:
        self.models = [models] if isinstance(models, str) else list(models)
        if not self.models:
            raise ValueError("FakeOpenAIServer needs at least one model name")
        self.responder = responder or echo_responder
        self.logprob_fn = logprob_fn
        self.latency_s = latency_s
        # A deque: the test thread appends while the server thread pops, and both are atomic.
        self.faults: deque[Fault] = deque(faults)
        self.host = host
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.completions_served = 0
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- addresses and test helpers -------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the server is not running yet")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def add_faults(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def completion_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("completions")]

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()
        self.peak_in_flight = self.in_flight
        self.completions_served = 0

    # -- running -----------------------------------------------------------------------------------

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Serve on the running loop until `stop()`; `ready` is called once the port is bound."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, self.host, self._port, limit=_HEADER_LIMIT, backlog=1024)
        self._port = server.sockets[0].getsockname()[1]
        try:
            if ready is not None:
                ready()
            await self._stopping.wait()
        finally:
            server.close()
            # Handlers may be parked in a long Fault.delay; they must not hold up shutdown.
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    def start(self) -> FakeOpenAIServer:
        """Serve from a background thread with its own event loop (for sync and async tests)."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(ready.set))
            except BaseException as exc:  # surfaced to the starting thread below
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake OpenAI server did not start within 10 s")
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP/1.1 ------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    writer.write(_serialise(_error(431, "request headers too large"), keep_alive=False))
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = request_line.split(" ", 2)
                except ValueError:
                    writer.write(_serialise(_error(400, "malformed request line"), keep_alive=False))
                    return
                headers: dict[str, str] = {}
                for line in header_lines:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    writer.write(_serialise(_error(411, "send a Content-Length body"), keep_alive=False))
                    return
                try:
                    length = int(headers.get("content-length", "0"))
                    raw = await reader.readexactly(length) if length > 0 else b""
                except ValueError:
                    writer.write(_serialise(_error(400, "bad Content-Length"), keep_alive=False))
                    return
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                response = await self._dispatch(method, target, headers, raw)
                if response is None:
                    return
                writer.write(_serialise(response, keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            pass  # the client went away (e.g. it timed out while we slept): nothing to answer
        except asyncio.CancelledError:
            # Shutdown cancels handlers; ending quietly spares Python 3.11's stream callback
            # from logging the cancellation as an error.
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _dispatch(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Response | None:
        path = target.split("?", 1)[0].rstrip("/") or "/"
        route = path[3:] if path.startswith("/v1/") else path
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        if self.record:
            self.requests.append(RecordedRequest(method, path, headers, body))

        if route == "/models":
            if method != "GET":
                return _error(405, f"{method} is not allowed on {path}")
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake-openai"} for m in self.models]
            return _json(200, {"object": "list", "data": data})
        if route not in ("/chat/completions", "/completions"):
            return _error(404, f"unknown path {path}", "not_found_error")
        if method != "POST":
            return _error(405, f"{method} is not allowed on {path}")

        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            fault = self.faults.popleft() if self.faults else None
            if fault is not None:
                if fault.kind == "drop":
                    return None
                if fault.kind == "status":
                    return _fault_response(fault)
                if fault.kind == "delay":
                    await asyncio.sleep(fault.seconds)
            if self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            if fault is not None and fault.kind == "malformed":
                text = fault.body if isinstance(fault.body, str) else None
                return _Response(200, text.encode() if text is not None else _TRUNCATED_JSON, {})
            if bad_json or not isinstance(body, dict):
                return _error(400, "the request body must be a JSON object")
            try:
                payload = self._complete(body, chat=route == "/chat/completions")
            except _BadRequest as exc:
                return _error(400, str(exc))
            except Exception as exc:  # a broken responder: answer, so the test sees why
                return _error(500, f"the responder failed: {exc!r}", "server_error")
            self.completions_served += 1
            return _json(200, payload)
        finally:
            self.in_flight -= 1

    # -- completions ---------------------------------------------------------------------------------

    def _complete(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        if body.get("stream"):
            raise _BadRequest("streaming is not supported by the fake server")
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _BadRequest("`n` must be a positive integer")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _BadRequest("`messages` must be a non-empty list")
            prompt_text = " ".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
            want_logprobs = bool(body.get("logprobs"))
        else:
            if "prompt" not in body:
                raise _BadRequest("`prompt` is required")
            prompt_text = _prompt_text(body["prompt"])
            want_logprobs = body.get("logprobs") not in (None, False)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])

        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        for index in range(n):
            reply = self.responder(body, index)
            # A responder may answer a chat request with native tool calls instead of text.
            calls = reply.tool_calls if isinstance(reply, FakeToolCalls) else None
            text, finish_reason, tokens = _finish(reply.content if calls else reply, stops, max_tokens)
            completion_tokens += len(tokens)
            choice: dict[str, Any] = {"index": index, "finish_reason": finish_reason, "logprobs": None}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
                if calls:
                    choice["finish_reason"] = "tool_calls"
                    choice["message"]["tool_calls"] = [
                        {"id": f"call_{index}_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                        for i, (name, args) in enumerate(calls)
                    ]
            else:
                choice["text"] = text
            if want_logprobs:
                value = self.logprob_fn(body, index, text) if self.logprob_fn else -0.1
                if chat:
                    content = [{"token": t, "logprob": value, "top_logprobs": []} for t in tokens]
                    choice["logprobs"] = {"content": content}
                else:
                    choice["logprobs"] = {"tokens": tokens, "token_logprobs": [value] * len(tokens)}
            choices.append(choice)

        prompt_tokens = len(prompt_text.split())
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-fake{self.completions_served}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model") or self.models[0],
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return " ".join(p for p in prompt if isinstance(p, str))
    return ""


def _finish(text: str, stops: list[str], max_tokens: Any) -> tuple[str, str, list[str]]:
    """Apply stop sequences and the token budget the way a real server would."""
    finish_reason = "stop"
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if cuts:
        text = text[: min(cuts)]
    tokens = _TOKEN.findall(text)
    if isinstance(max_tokens, int) and 0 < max_tokens < len(tokens):
        tokens = tokens[:max_tokens]
        text = "".join(tokens)
        finish_reason = "length"
    return text, finish_reason, tokens


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


def _error(status: int, message: str, kind: str = "invalid_request_error") -> _Response:
    return _json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


def _fault_response(fault: Fault) -> _Response:
    if isinstance(fault.body, str):
        return _Response(fault.code, fault.body.encode(), {"Content-Type": "text/plain", **(fault.headers or {})})
    payload = fault.body
    if payload is None:
        kind = "server_error" if fault.code >= 500 else "invalid_request_error"
        kind = "rate_limit_error" if fault.code == 429 else kind
        payload = {"error": {"message": f"injected HTTP {fault.code}", "type": kind, "param": None, "code": None}}
    return _json(fault.code, payload, fault.headers)


def _serialise(response: _Response, keep_alive: bool) -> bytes:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasoner.testing.fake_openai", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every completion")
    parser.add_argument("--model", action="append", help="a model name to serve (repeatable)")
    args = parser.parse_args(argv)
    # Recording is off: a long benchmark would otherwise grow the request log without bound.
    models = args.model or "fake-model"
    server = FakeOpenAIServer(models, latency_s=args.latency, host=args.host, port=args.port, record=False)
    try:
        asyncio.run(server.serve(lambda: print(server.base_url, flush=True)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
