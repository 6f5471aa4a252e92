"""OpenAIBackend against the fake OpenAI server, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from reasoner.backends.base import BackendError
from reasoner.backends.http import OpenAIBackend, from_openai_env, retry_after_seconds
from reasoner.testing.fake_openai import Fault, FakeOpenAIServer
from reasoner.types import GenerationRequest, Message

KEY = "sk-test-SECRET-123"


def _reply(body: dict[str, Any], index: int) -> str:
    return f"answer {index} is 42"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer("fake-model", responder=_reply, logprob_fn=lambda body, i, text: -0.5) as srv:
        yield srv


@pytest.fixture
async def backend(server: FakeOpenAIServer) -> AsyncIterator[OpenAIBackend]:
    be = OpenAIBackend(server.base_url, "fake-model", api_key=KEY, backoff_base=0.001, read_timeout=5.0)
    yield be
    await be.aclose()


def _ask(prompt: str = "what is six times seven", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **kwargs)


async def test_chat_call_parses_text_usage_and_logprobs(server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    completion = await backend.generate(_ask(logprobs=True))

    assert completion.text == "answer 0 is 42"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].token_logprobs == [-0.5] * 4
    assert completion.prompt_tokens == 5
    assert completion.completion_tokens == 4
    assert completion.model == "fake-model"
    assert completion.latency_s > 0
    (recorded,) = server.requests
    assert recorded.path == "/v1/chat/completions"
    assert recorded.body["messages"] == [{"role": "user", "content": "what is six times seven"}]


async def test_completions_endpoint_for_text_prompts(server: FakeOpenAIServer) -> None:
    async with OpenAIBackend(server.base_url, "fake-model", chat=False) as backend:
        completion = await backend.generate(_ask("count", logprobs=True, max_tokens=2))
        joined = await backend.generate(GenerationRequest(messages=(Message(role="user", content="hi"),)))

    assert completion.text == "answer 0"
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].token_logprobs == [-0.5, -0.5]
    assert (completion.prompt_tokens, completion.completion_tokens) == (1, 2)
    assert server.requests[0].path == "/v1/completions"
    assert server.requests[0].body["prompt"] == "count"
    assert server.requests[0].body["logprobs"] == 1
    # A completion-only model (no chat template) reads chat turns as one text.
    assert server.requests[1].path == "/v1/completions"
    assert server.requests[1].body["prompt"] == "hi"
    assert joined.text


async def test_every_parameter_is_sent(server: FakeOpenAIServer) -> None:
    async with OpenAIBackend(server.base_url, "fake-model", api_key=KEY, extra_body={"top_k": 20, "n": 5}) as backend:
        request = GenerationRequest(
            messages=(Message(role="system", content="be brief"), Message(role="user", content="hi")),
            n=2,
            temperature=0.7,
            top_p=0.9,
            max_tokens=33,
            stop=("\n\n", "END"),
            seed=11,
            logprobs=True,
        )
        await backend.generate(request)

    body = server.requests[0].body
    assert body == {
        "model": "fake-model",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "n": 5,  # extra_body wins
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 33,
        "stop": ["\n\n", "END"],
        "seed": 11,
        "logprobs": True,
        "top_k": 20,
    }
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_n_gives_that_many_choices(backend: OpenAIBackend) -> None:
    completion = await backend.generate(_ask(n=3, temperature=1.0))

    assert [c.text for c in completion.choices] == ["answer 0 is 42", "answer 1 is 42", "answer 2 is 42"]
    assert completion.completion_tokens == 12


async def test_429_waits_for_retry_after(server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    server.add_faults(Fault.status(429, headers={"Retry-After": "1"}))

    started = time.perf_counter()
    completion = await backend.generate(_ask())

    assert time.perf_counter() - started >= 0.9
    assert completion.text == "answer 0 is 42"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(500),
        Fault.status(503, body="upstream busy"),
        Fault.malformed(),
        Fault.malformed('{"no": "choices"}'),
        Fault.drop(),
    ],
    ids=["500", "503-text", "truncated-json", "no-choices", "drop"],
)
async def test_transient_failures_are_retried(server: FakeOpenAIServer, backend: OpenAIBackend, fault: Fault) -> None:
    server.add_faults(fault, fault)

    completion = await backend.generate(_ask())

    assert completion.text == "answer 0 is 42"
    assert len(server.completion_requests()) == 3


async def test_read_timeout_is_retried(server: FakeOpenAIServer) -> None:
    server.add_faults(Fault.delay(3.0))
    async with OpenAIBackend(server.base_url, read_timeout=0.2, backoff_base=0.001) as backend:
        started = time.perf_counter()
        completion = await backend.generate(_ask())

    assert completion.text == "answer 0 is 42"
    assert time.perf_counter() - started < 2.0
    assert len(server.requests) == 2


async def test_gives_up_after_max_attempts(server: FakeOpenAIServer) -> None:
    server.add_faults(*[Fault.status(500)] * 10)
    async with OpenAIBackend(server.base_url, max_attempts=3, backoff_base=0.001) as backend:
        with pytest.raises(BackendError) as info:
            await backend.generate(_ask())

    message = str(info.value)
    assert "3 attempts" in message
    assert "/chat/completions" in message
    assert "HTTP 500" in message
    assert len(server.requests) == 3


async def test_backoff_uses_full_jitter_and_caps_retry_after(server: FakeOpenAIServer) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    server.add_faults(Fault.status(502), Fault.status(502), Fault.status(429, headers={"Retry-After": "120"}))
    async with OpenAIBackend(server.base_url, backoff_base=0.5, backoff_max=10.0) as backend:
        backend._sleep = fake_sleep
        await backend.generate(_ask())

    assert 0 <= slept[0] <= 0.5 and 0 <= slept[1] <= 1.0
    assert slept[2] == 10.0


async def test_401_is_not_retried_and_never_leaks_the_key(
    server: FakeOpenAIServer, backend: OpenAIBackend, caplog: pytest.LogCaptureFixture
) -> None:
    echoed = {"error": {"message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error"}}
    server.add_faults(Fault.status(500, body=f"oops {KEY}"), Fault.status(401, body=echoed))

    with caplog.at_level(logging.DEBUG), pytest.raises(BackendError) as info:
        await backend.generate(_ask())

    exc = info.value
    assert "HTTP 401" in str(exc)
    assert "Incorrect API key provided" in str(exc)
    assert len(server.requests) == 2  # the 500 was retried, the 401 was not
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    leaks = [str(exc), repr(exc), repr(backend), str(backend.describe()), str(vars(backend)), caplog.text]
    assert all(KEY not in text for text in leaks)
    assert exc.__cause__ is None


async def test_other_4xx_fail_at_once_quoting_the_body(server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    server.add_faults(Fault.status(400, body="x" * 5000))

    with pytest.raises(BackendError, match=r"HTTP 400: x+\.\.\.") as info:
        await backend.generate(_ask())

    assert len(str(info.value)) < 500
    assert len(server.requests) == 1


@pytest.mark.parametrize("limit", [4, 6])
async def test_in_flight_bound_is_respected(server: FakeOpenAIServer, limit: int) -> None:
    server.latency_s = 0.05
    async with OpenAIBackend(server.base_url, max_in_flight=limit) as backend:
        results = await asyncio.gather(*(backend.generate(_ask(f"question {i}")) for i in range(20)))

    assert len(results) == 20
    # Reaching the bound, not only staying under it: the connection pool must not be the limit.
    assert server.peak_in_flight == limit


async def test_list_models(backend: OpenAIBackend) -> None:
    with FakeOpenAIServer(["model-a", "model-b"]) as other:
        async with OpenAIBackend(other.base_url) as other_backend:
            assert await other_backend.list_models() == ["model-a", "model-b"]
    assert await backend.list_models() == ["fake-model"]


async def test_unreachable_server_is_retried_then_reported() -> None:
    with FakeOpenAIServer() as srv:
        url = srv.base_url  # a port that nothing listens on once the server stops
    async with OpenAIBackend(url, max_attempts=2, backoff_base=0.001, connect_timeout=1.0) as backend:
        with pytest.raises(BackendError, match="2 attempts.*ConnectError"):
            await backend.generate(_ask())


def test_env_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    backend = from_openai_env("gpt-test")
    assert backend.base_url == "https://api.openai.com/v1"
    assert backend._api_key is not None and backend._api_key.get_secret_value() == KEY
    assert KEY not in repr(backend) and KEY not in str(backend.describe())

    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1/")
    assert from_openai_env("m").base_url == "http://localhost:8000/v1"


def test_retry_after_parsing() -> None:
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert retry_after_seconds(httpx.Headers({"Retry-After": "2.5"})) == 2.5
    assert retry_after_seconds(httpx.Headers({"Retry-After": later}), now=now) == 7.0
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250", "Retry-After": "9"})) == 0.25
    assert retry_after_seconds(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Headers()) is None


def test_server_runs_as_a_subprocess() -> None:
    command = [sys.executable, "-m", "reasoner.testing.fake_openai", "--port", "0", "--latency", "0.01"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            base_url = proc.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
            body = {"messages": [{"role": "user", "content": "hi"}], "n": 2}
            reply = httpx.post(f"{base_url}/chat/completions", json=body)
            assert reply.status_code == 200
            assert len(reply.json()["choices"]) == 2
        finally:
            proc.terminate()


async def test_assistant_prefill_is_continued_folded_or_joined() -> None:
    from reasoner.types import Message

    request = GenerationRequest(
        messages=(Message(role="user", content="Q: 1+1?"), Message(role="assistant", content="A: Let's think.")),
        max_tokens=4,
    )
    with FakeOpenAIServer() as server:
        for kwargs in ({"continue_final": True}, {}, {"chat": False}):
            backend = OpenAIBackend(server.base_url, "fake-model", api_key="k", **kwargs)
            await backend.generate(request)
            await backend.aclose()
        continued, folded, joined = (r.body for r in server.completion_requests())
    assert continued["messages"][-1] == {"role": "assistant", "content": "A: Let's think."}
    assert continued["continue_final_message"] is True and continued["add_generation_prompt"] is False
    assert folded["messages"] == [{"role": "user", "content": "Q: 1+1?\nA: Let's think."}]
    assert "continue_final_message" not in folded
    assert joined["prompt"] == "Q: 1+1?\nA: Let's think."


async def test_native_tool_calls_and_structured_output_round_trip() -> None:
    from reasoner.testing.fake_openai import FakeToolCalls
    from reasoner.types import Message, ToolCall

    schema = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
    tools = ({"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}},)

    def responder(body: dict[str, Any], index: int) -> Any:
        if "tools" in body:
            return FakeToolCalls([("calculator", {"expression": "2+3"})])
        return '{"x": 5}'

    with FakeOpenAIServer(responder=responder) as server:
        async with OpenAIBackend(server.base_url, "fake-model", api_key="k") as backend:
            called = await backend.generate(GenerationRequest(prompt="add", tools=tools))
            history = (
                Message(role="user", content="add"),
                Message(role="assistant", content="", tool_calls=tuple(called.choices[0].tool_calls or ())),
                Message(role="tool", content="5", tool_call_id=called.choices[0].tool_calls[0].id),  # type: ignore[index]
            )
            structured = await backend.generate(GenerationRequest(messages=history, json_schema=schema))
        first, second = (r.body for r in server.completion_requests())
    assert called.choices[0].tool_calls == [ToolCall(id="call_0_0", name="calculator", arguments='{"expression": "2+3"}')]
    assert called.choices[0].finish_reason == "tool_calls"
    assert first["tools"] == list(tools)
    assert second["messages"][1]["tool_calls"][0]["function"]["name"] == "calculator"
    assert second["messages"][2] == {"role": "tool", "content": "5", "tool_call_id": "call_0_0"}
    assert second["response_format"]["json_schema"]["schema"] == schema
    assert structured.text == '{"x": 5}'
