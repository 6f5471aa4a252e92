"""Shared by the gateway's tests: a simulated upstream, the gateway in front of it on a real
uvicorn server, and the official OpenAI SDK as the client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# Every gateway test needs these; a module that imports this one is skipped without them.
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from reasoner.backends.http import OpenAIBackend  # noqa: E402
from reasoner.serve import BackgroundGateway, ServeConfig  # noqa: E402
from reasoner.testing.fake_openai import FakeOpenAIServer, FakeToolCalls  # noqa: E402

MODEL = "fake-model"
QUESTION = [{"role": "user", "content": "What is 6 times 7?"}]
#: The key the upstream's backend sends; a prompt holding ECHO_KEY gets it back in the reply.
UPSTREAM_KEY = "sk-upstream-secret-0123456789"
ECHO_KEY = "ECHO-THE-KEY"


def responder(body: dict[str, Any], index: int) -> str | FakeToolCalls:
    """Tools asked for: a weather call. Otherwise reasoning whose answer is 42, but 41 for every
    fourth sample, so a vote has something to decide."""
    if body.get("tools"):
        return FakeToolCalls([("get_weather", {"city": "Paris"})])
    text = str((body.get("messages") or [{}])[-1].get("content") or body.get("prompt") or "")
    if ECHO_KEY in text:
        return f"Your key is {UPSTREAM_KEY}."
    if text.rstrip().endswith("the answer (arabic numerals) is"):
        return " 42."
    return "6 times 7 is 42. The answer is 42." if index % 4 else "6 times 7 is 41. The answer is 41."


#: A gateway test module's simulated upstream (conftest's `server`) answers with `responder`.
SERVED = pytest.mark.server(models=MODEL, responder=responder)


@pytest.fixture(scope="module")
def upstream(server: FakeOpenAIServer) -> FakeOpenAIServer:
    """The module's simulated server, by the name the gateway's tests give it; mark the module `SERVED`."""
    return server


@contextmanager
def gateway(
    upstream: FakeOpenAIServer, *, tune: Callable[[OpenAIBackend], None] | None = None, **config: Any
) -> Iterator[BackgroundGateway]:
    """The gateway on a free port in front of `upstream`; `backend` options (max_attempts,
    deadline_s, api_key, max_in_flight) go to the upstream's backend."""
    backend_options = config.pop("backend", {})

    async def open_it() -> OpenAIBackend:
        backend = await OpenAIBackend(upstream.base_url, **{"max_attempts": 1, **backend_options}).connect()
        if tune is not None:
            tune(backend)
        return backend

    with BackgroundGateway(ServeConfig(model=upstream.base_url, port=0, **config), open_it) as gw:
        yield gw


def client(gw: BackgroundGateway, api_key: str = "unused", **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=api_key, max_retries=0, **options)


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    """Return once `condition` holds. Only a guard against a hang: it raises if `condition` does not
    hold within `timeout`, and says nothing of how long it took, so tests assert on counts and the
    order of events, never on this wait (shared CI machines are too noisy for wall-clock bounds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.01)
