"""Canned OpenAI answers without sockets, through `httpx.MockTransport`, for tests that only need
the protocol (the fake server in fake_openai.py is for the paths where sockets matter).

    mock = MockOpenAI(honour_n=False)
    backend = mock.backend(max_attempts=2)        # an OpenAIBackend over the mock
    mock.fail(httpx.Response(503), httpx.ConnectError("refused"))   # the next answers
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from reasoner.backends.http import OpenAIBackend
from reasoner.testing.fake_completions import BadRequest, LogprobFn, Responder, complete, echo_responder

BASE_URL = "http://mock.invalid/v1"


class MockOpenAI:
    """An OpenAI-compatible server as a function of the request, with the fake server's options:
    `honour_n=False` answers one choice whatever `n` asks; `json_schema=False` refuses
    `response_format` json_schema with a 500, as llama-cpp-python's server does."""

    def __init__(
        self,
        models: Sequence[dict[str, Any]] | None = None,
        *,
        responder: Responder | None = None,
        logprob_fn: LogprobFn | None = None,
        honour_n: bool = True,
        json_schema: bool = True,
    ) -> None:
        self.models = list(models or [{"id": "fake-model", "object": "model", "owned_by": "mock"}])
        self.responder = responder or echo_responder
        self.logprob_fn = logprob_fn
        self.honour_n = honour_n
        self.json_schema = json_schema
        self.requests: list[httpx.Request] = []
        self._next: list[httpx.Response | Exception] = []

    def fail(self, *answers: httpx.Response | Exception) -> None:
        """Answer the next requests with these (an exception is raised as the network's)."""
        self._next.extend(answers)

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the completion requests received, in order."""
        return [json.loads(r.content) for r in self.requests if r.url.path.endswith("completions")]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def backend(self, model: str | None = "fake-model", **kwargs: Any) -> OpenAIBackend:
        kwargs.setdefault("backoff_base", 0.001)
        return OpenAIBackend(BASE_URL, model, http_transport=self.transport(), **kwargs)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self._next:
            answer = self._next.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        path = request.url.path
        if path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": self.models})
        if not path.endswith("completions"):
            return _error(404, f"unknown path {path}")
        body = json.loads(request.content)
        if not self.json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            return _error(500, "1 validation error: Input should be 'text' or 'json_object'")
        try:
            done = complete(
                body, path.endswith("/chat/completions"), self.responder, self.logprob_fn, self.models[0]["id"],
                len(self.requests), None if self.honour_n else 1,
            )  # fmt: skip
        except BadRequest as exc:
            return _error(400, str(exc))
        if not body.get("stream"):
            return httpx.Response(200, json=done.body())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = "".join(f"data: {json.dumps(e)}\n\n" for e in done.events(include_usage)) + "data: [DONE]\n\n"
        return httpx.Response(200, content=events.encode(), headers={"Content-Type": "text/event-stream"})


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "invalid_request_error"}})
