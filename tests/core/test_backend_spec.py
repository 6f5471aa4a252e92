"""open_backend: what each spec needs up front, and the options every spec accepts."""

from __future__ import annotations

import pytest

from reasoner.backends.errors import BackendError
from reasoner.backends.http import OpenAIBackend
from reasoner.backends.spec import open_backend
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.types import GenerationRequest


async def test_openai_without_a_key_fails_at_once_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)  # where any call would go
        with pytest.raises(BackendError, match="OPENAI_API_KEY"):
            await open_backend("openai:gpt-4o-mini")
    # At once: refused before any call (nothing to wait for or retry), so the server saw none.
    assert server.requests == []


async def test_openai_key_with_a_newline_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-newline-key-4711\n")
    with pytest.raises(BackendError, match="OPENAI_API_KEY") as info:
        await open_backend("openai:gpt-4o-mini")
    assert "sk-proj-newline-key-4711" not in str(info.value)


async def test_http_specs_take_the_network_options() -> None:
    with FakeOpenAIServer() as server:
        backend = await open_backend(
            server.base_url, max_in_flight=3, deadline_s=5.0, stall_timeout_s=2.0, max_response_bytes=4096, max_attempts=None
        )
        try:
            assert isinstance(backend, OpenAIBackend)
            assert backend.model == "fake-model"  # connect() asked /models
            assert (backend.max_in_flight, backend.deadline_s, backend.stall_timeout_s) == (3, 5.0, 2.0)
            assert backend.max_response_bytes == 4096
            assert backend.retrying.max_attempts == 6  # None: the default
            assert (await backend.generate(GenerationRequest(prompt="hi"))).text == "Echo 0: hi"
        finally:
            await backend.aclose()


async def test_other_specs_accept_and_ignore_the_network_options() -> None:
    pytest.importorskip("llama_cpp")
    backend = await open_backend("local", max_in_flight=3, deadline_s=5.0, stall_timeout_s=2.0, max_response_bytes=4096)
    assert backend.max_in_flight == 3
    assert not hasattr(backend, "deadline_s")
