"""A real OpenAI-compatible HTTP server, for tests and benchmarks, that can be told to misbehave.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies; `stream: true` answers as
server-sent events on a closing connection) over asyncio streams, so it needs nothing beyond the
standard library and clients exercise their real network stack. It can also behave like servers
that lack features (`honour_n=False`, `json_schema=False`) and commit the faults in fake_wire.py.

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
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from reasoner.testing.fake_completions import (
    BadRequest,
    FakeToolCalls,
    LogprobFn,
    Responder,
    complete,
    echo_responder,
)
from reasoner.testing.fake_wire import (
    Fault,
    RecordedRequest,
    Response,
    Streamed,
    endless,
    error,
    fault_response,
    json_response,
    serialise,
    trickle,
)

__all__ = ["Fault", "FakeOpenAIServer", "FakeToolCalls", "LogprobFn", "RecordedRequest", "Responder", "echo_responder"]

_TRUNCATED_JSON = b'{"id": "cmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'
_HEADER_LIMIT = 64 * 1024
# llama-cpp-python's server answers an unknown `response_format` type with a 500 like this one.
_SCHEMA_REFUSAL = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
    "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}"
)


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
        honour_n: bool = True,
        json_schema: bool = True,
        stream_delay_s: float = 0.0,
        token_chars: int | None = None,
        reasoning_field: str | None = None,
    ) -> None:
        """`honour_n=False` answers one choice whatever `n` asks (as llama.cpp's servers and Ollama
        do); `json_schema=False` refuses `response_format` json_schema with a 500 (as
        llama-cpp-python's server does); `stream_delay_s` paces the events of a `stream: true` answer;
        `token_chars` cuts words longer than that into several tokens (a streamed key comes in pieces);
        `reasoning_field` ("reasoning_content", or "reasoning" as vLLM names it) makes it a server
        with a reasoning parser: a reply's `<think>…</think>` is sent in that field, whole or streamed,
        counted in the usage, and cut at a request's `thinking_token_budget`."""
        if reasoning_field not in (None, "reasoning_content", "reasoning"):
            raise ValueError(f"reasoning_field must be 'reasoning_content' or 'reasoning', got {reasoning_field!r}")
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
        self.honour_n = honour_n
        self.json_schema = json_schema
        self.stream_delay_s = stream_delay_s
        self.token_chars = token_chars
        self.reasoning_field = reasoning_field
        #: Stream events written, and streams the client hung up on before their end.
        self.stream_events_sent = 0
        self.streams_cancelled = 0
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
                    writer.write(serialise(error(431, "request headers too large"), keep_alive=False))
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = request_line.split(" ", 2)
                except ValueError:
                    writer.write(serialise(error(400, "malformed request line"), keep_alive=False))
                    return
                headers: dict[str, str] = {}
                for line in header_lines:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    writer.write(serialise(error(411, "send a Content-Length body"), keep_alive=False))
                    return
                try:
                    length = int(headers.get("content-length", "0"))
                    raw = await reader.readexactly(length) if length > 0 else b""
                except ValueError:
                    writer.write(serialise(error(400, "bad Content-Length"), keep_alive=False))
                    return
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                response, pipelined = await self._dispatch_watching(reader, method, target, headers, raw)
                if response is None:
                    return
                keep_alive = keep_alive and not pipelined
                if isinstance(response, Streamed):
                    await self._write_stream(response, reader, writer)
                    return
                writer.write(serialise(response, keep_alive))
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

    async def _write_stream(self, response: Streamed, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = ["HTTP/1.1 200 OK", *(f"{k}: {v}" for k, v in response.headers.items()), "Connection: close"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        async for piece in response.pieces:
            # The client hung up (it stopped reading the stream): stop generating, as servers do.
            if reader.at_eof() or writer.is_closing():
                self.streams_cancelled += 1
                return
            writer.write(piece)
            try:
                await writer.drain()
            except ConnectionError:
                # It hung up while we waited for it to read (a body faster than the client).
                self.streams_cancelled += 1
                raise

    async def _dispatch_watching(
        self, reader: asyncio.StreamReader, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[Response | Streamed | None, bool]:
        """`_dispatch`, abandoned when the client hangs up meanwhile, as real servers abort such a
        request (so `in_flight` shows a client's cancellation). Also says whether the client sent
        more bytes meanwhile (pipelining, which no client here uses): that connection is closed
        after the answer, since a byte read to watch for the hang-up cannot be put back."""
        work = asyncio.ensure_future(self._dispatch(method, target, headers, raw))
        hangup = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait([work, hangup], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            hangup.cancel()
            raise
        if not work.done() and (hangup.exception() is not None or hangup.result() == b""):
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            return None, False
        if not hangup.done():
            hangup.cancel()
            await asyncio.gather(hangup, return_exceptions=True)
        pipelined = hangup.done() and not hangup.cancelled() and hangup.exception() is None and bool(hangup.result())
        return await work, pipelined

    async def _dispatch(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Response | Streamed | None:
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
                return error(405, f"{method} is not allowed on {path}")
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake-openai"} for m in self.models]
            return json_response(200, {"object": "list", "data": data})
        if route not in ("/chat/completions", "/completions"):
            return error(404, f"unknown path {path}", "not_found_error")
        if method != "POST":
            return error(405, f"{method} is not allowed on {path}")

        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            fault = self.faults.popleft() if self.faults else None
            if fault is not None:
                if fault.kind == "drop":
                    return None
                if fault.kind == "status":
                    return fault_response(fault)
                if fault.kind == "delay":
                    await asyncio.sleep(fault.seconds)
                if fault.kind == "endless":
                    return Streamed({"Content-Type": "application/json"}, endless())
                if fault.kind == "trickle":
                    return Streamed({"Content-Type": "application/json", "Content-Length": "1000000"}, trickle(fault.seconds))
            if self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            if fault is not None and fault.kind == "malformed":
                text = fault.body if isinstance(fault.body, str) else None
                return Response(200, text.encode() if text is not None else _TRUNCATED_JSON, {})
            if bad_json or not isinstance(body, dict):
                return error(400, "the request body must be a JSON object")
            try:
                answer = self._complete(body, chat=route == "/chat/completions")
            except BadRequest as exc:
                return error(400, str(exc))
            except Exception as exc:  # a broken responder: answer, so the test sees why
                return error(500, f"the responder failed: {exc!r}", "server_error")
            if answer[0] == 200 or isinstance(answer, Streamed):
                self.completions_served += 1
            return answer
        finally:
            self.in_flight -= 1

    # -- completions ---------------------------------------------------------------------------------

    def _complete(self, body: dict[str, Any], chat: bool) -> Response | Streamed:
        if not self.json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            return error(500, _SCHEMA_REFUSAL, "internal_server_error")
        done = complete(
            body, chat, self.responder, self.logprob_fn, self.models[0], self.completions_served, None if self.honour_n else 1,
            self.token_chars, self.reasoning_field,
        )
        if not body.get("stream"):
            return json_response(200, done.body())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = [f"data: {json.dumps(event)}\n\n".encode() for event in done.events(include_usage)]
        return Streamed({"Content-Type": "text/event-stream"}, self._events([*events, b"data: [DONE]\n\n"]))

    async def _events(self, events: list[bytes]) -> AsyncIterator[bytes]:
        for event in events:
            if self.stream_delay_s > 0:
                await asyncio.sleep(self.stream_delay_s)
            yield event
            self.stream_events_sent += 1


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
