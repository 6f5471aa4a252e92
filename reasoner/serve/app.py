"""The gateway's HTTP app (Starlette): OpenAI's chat and text completion endpoints with a
strategy chosen by the model name, a passthrough for plain names, models, traces and health."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as Endpoint

from reasoner.backends.base import Backend, Delegating
from reasoner.backends.errors import BackendError
from reasoner.backends.http import OpenAIBackend
from reasoner.serve import passthrough, responses
from reasoner.serve.asgi import EventStream, ScrubbedJSON, Watched, error_response
from reasoner.serve.config import ServeConfig
from reasoner.serve.errors import APIError, bad_request, from_backend, overloaded
from reasoner.serve.reasoning import Runner
from reasoner.serve.routes import resolve
from reasoner.serve.schemas import ChatRequest, CommonRequest, CompletionRequest, check_limits, parse
from reasoner.serve.traces import TraceStore
from reasoner.strategy import available


class Gateway:
    """What the endpoints share: the backend, the strategy runner, the traces, the settings."""

    def __init__(self, backend: Backend, config: ServeConfig) -> None:
        self.backend = backend
        self.config = config
        self.traces = TraceStore(config.max_traces)
        self.runner = Runner(backend, self.traces, config.max_runs, config.max_waiting)
        # A sample bank keys its records by its own model string; clients name the model it wraps
        # (under any wrapper: the bank, `--think-tags`).
        inner = backend
        while isinstance(inner, Delegating):
            inner = inner.inner
        model = getattr(inner, "model", None)
        #: The name /v1/models lists; the spec answers too (`local`, `vllm:...`).
        self.model_id = model if isinstance(model, str) and model else config.model
        self.served = {self.model_id, config.model}
        #: Plain (passthrough) requests open, and those refused for want of room.
        self.passing = 0
        self.refused_passthrough = 0

    def authorize(self, request: Request) -> None:
        key = self.config.api_key_value()
        if key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise APIError(401, "a valid API key is needed: send `Authorization: Bearer KEY`", type="authentication_error",
                           code="invalid_api_key")  # fmt: skip

    async def body(self, request: Request) -> Any:
        limit = self.config.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise bad_request(f"the request body is {declared} bytes; this gateway takes at most {limit}", "body", "request_too_large")
        raw = bytearray()
        async for piece in request.stream():
            raw += piece
            if len(raw) > limit:
                raise bad_request(f"the request body is over {limit} bytes", "body", "request_too_large")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"the request body is not JSON: {exc}", None, "invalid_json") from None

    async def completions(self, request: Request, kind: responses.Kind) -> Response:
        try:
            self.authorize(request)
            data = await self.body(request)
            parsed: CommonRequest = parse(ChatRequest if kind == "chat" else CompletionRequest, data)
            check_limits(parsed, self.config.limits)  # type: ignore[arg-type]
            route = resolve(parsed.model, parsed.reasoner, self.served)
        except APIError as exc:
            return error_response(exc)
        if route.strategy is None:
            return self._passthrough(parsed, data, kind)
        answer_mode = (parsed.reasoner and parsed.reasoner.answer) or self.config.answer
        if not parsed.stream:
            return Watched(lambda: self.runner.answer(route, parsed, kind, answer_mode))  # type: ignore[arg-type]
        mode = parsed.reasoner.progress if parsed.reasoner else "comments"

        async def start() -> AsyncIterator[bytes]:
            return self.runner.stream(route, parsed, kind, answer_mode, mode)  # type: ignore[arg-type]

        return EventStream(start)

    def _passthrough(self, parsed: Any, data: dict[str, Any], kind: responses.Kind) -> Response:
        backend = self.backend
        path = "/chat/completions" if kind == "chat" else "/completions"
        try:
            self._admit_passthrough()
        except APIError as exc:
            return error_response(exc)
        done = self._passthrough_done
        if isinstance(backend, OpenAIBackend):
            if not parsed.stream:
                return Watched(_upstream(lambda: passthrough.forward(backend, path, data, parsed.model)), done)

            async def start_forwarded() -> AsyncIterator[bytes]:
                stream = passthrough.ForwardedStream(backend, path, data)
                await _upstream(stream.start)()
                return _upstream_stream(stream.events())

            return EventStream(start_forwarded, done)
        if not parsed.stream:
            return Watched(_upstream(lambda: passthrough.generate(backend, parsed, kind)), done)

        async def start_translated() -> AsyncIterator[bytes]:
            passthrough.generation_request(parsed)  # a bad field fails before the status is sent
            return _upstream_stream(passthrough.stream(backend, parsed, kind))

        return EventStream(start_translated, done)

    def _admit_passthrough(self) -> None:
        """Plain requests share the backend's in-flight bound; beyond it, at most `max_waiting`
        wait, as strategy runs do, and the rest are refused at once with 503."""
        limit = self.backend.max_in_flight + self.config.max_waiting
        if self.passing >= limit:
            self.refused_passthrough += 1
            raise overloaded(f"the gateway is busy: {self.passing} plain requests open, the most it takes (the backend's "
                             f"{self.backend.max_in_flight} in flight and --max-waiting {self.config.max_waiting}); try again shortly",
                             1)  # fmt: skip
        self.passing += 1

    def _passthrough_done(self) -> None:
        self.passing -= 1

    async def models(self, request: Request) -> Response:
        self.authorize(request)
        names = [self.model_id, *(f"{name}/{self.model_id}" for name in sorted(available()))]
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "reasoner"} for name in names]
        return ScrubbedJSON({"object": "list", "data": data})

    async def trace(self, request: Request) -> Response:
        self.authorize(request)
        trace_id = request.path_params["trace_id"]
        found = self.traces.get(trace_id)
        if found is None:
            raise APIError(404, f"no trace {trace_id!r} (the gateway keeps the last {self.traces.capacity})", param="trace_id",
                           code="trace_not_found")  # fmt: skip
        return ScrubbedJSON(found)

    async def health(self, request: Request) -> Response:
        return ScrubbedJSON({"status": "ok", "model": self.model_id, "running": self.runner.running,
                             "waiting": self.runner.waiting, "max_runs": self.runner.max_runs,
                             "max_waiting": self.runner.max_waiting, "refused": self.runner.refused,
                             "passthrough": {"open": self.passing, "refused": self.refused_passthrough}})  # fmt: skip


def _upstream(work: Any) -> Any:
    """`work` with an upstream failure turned into the status it stands for."""

    async def call() -> Any:
        try:
            return await work()
        except BackendError as exc:
            raise from_backend(exc, passthrough=True) from None

    return call


async def _upstream_stream(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for piece in events:
            yield piece
    except BackendError as exc:
        raise from_backend(exc, passthrough=True) from None
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def create_app(backend: Backend, config: ServeConfig, *, close_backend: bool = False) -> Starlette:
    """The gateway in front of an open `backend`; `close_backend` closes it when the app stops."""
    gateway = Gateway(backend, config)

    async def chat(request: Request) -> Response:
        return await gateway.completions(request, "chat")

    async def text(request: Request) -> Response:
        return await gateway.completions(request, "text")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close_backend:
                await backend.aclose()

    async def api_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)  # type: ignore[arg-type]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code="not_found"
                                       if exc.status_code == 404 else None))  # fmt: skip

    app = Starlette(
        routes=[
            Endpoint("/v1/chat/completions", chat, methods=["POST"]),
            Endpoint("/v1/completions", text, methods=["POST"]),
            Endpoint("/v1/models", gateway.models, methods=["GET"]),
            Endpoint("/v1/traces/{trace_id}", gateway.trace, methods=["GET"]),
            Endpoint("/health", gateway.health, methods=["GET"]),
        ],
        exception_handlers={APIError: api_error, HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
