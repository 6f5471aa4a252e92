"""A `server` fixture for tests that talk to a simulated OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reasoner.testing.fake_openai import FakeOpenAIServer


def server_fixture(responder: Callable[[dict[str, Any], int], Any], model: str = "tiny") -> Any:
    """A fixture, one server a test, that answers every request with `responder(body, index)`;
    bind it to a name in the test module (`server = server_fixture(solver)`)."""

    @pytest.fixture
    def server() -> Iterator[FakeOpenAIServer]:
        with FakeOpenAIServer(model, responder=responder) as srv:
            yield srv

    return server
