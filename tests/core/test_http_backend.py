"""OpenAIBackend's protocol, errors and learned capabilities, against canned answers
(httpx.MockTransport: no sockets). The socket paths are in test_http_transport.py."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from reasoner import secrets
from reasoner.backends.errors import BackendConnectionError, BackendError, BackendTimeoutError, BadRequestError
from reasoner.backends.errors import MalformedResponseError, RateLimitedError, ServerError
from reasoner.backends.http import OpenAIBackend, from_openai_env, retry_after_seconds
from reasoner.testing.fake_completions import FakeToolCalls
from reasoner.testing.mock_openai import BASE_URL, MockOpenAI
from reasoner.types import GenerationRequest, Message, ToolCall

KEY = "sk-test-SECRET-123"


def _reply(body: dict[str, Any], index: int) -> str:
    return f"answer {index} is 42"


@pytest.fixture
def mock() -> MockOpenAI:
    return MockOpenAI(responder=_reply, logprob_fn=lambda body, i, text: -0.5)


def _ask(prompt: str = "what is six times seven", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **kwargs)


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "invalid_request_error"}})


async def test_chat_call_parses_text_usage_and_logprobs(mock: MockOpenAI) -> None:
    async with mock.backend(api_key=KEY) as backend:
        completion = await backend.generate(_ask(logprobs=True))

    assert completion.text == "answer 0 is 42"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].token_logprobs == [-0.5] * 4
    assert completion.prompt_tokens == 5
    assert completion.completion_tokens == 4
    assert completion.model == "fake-model"
    assert completion.latency_s > 0
    (recorded,) = mock.requests
    assert recorded.url.path == "/v1/chat/completions"
    assert mock.bodies()[0]["messages"] == [{"role": "user", "content": "what is six times seven"}]


async def test_completions_endpoint_for_text_prompts(mock: MockOpenAI) -> None:
    async with mock.backend(chat=False) as backend:
        completion = await backend.generate(_ask("count", logprobs=True, max_tokens=2))
        joined = await backend.generate(GenerationRequest(messages=(Message(role="user", content="hi"),)))

    assert completion.text == "answer 0"
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].token_logprobs == [-0.5, -0.5]
    assert (completion.prompt_tokens, completion.completion_tokens) == (1, 2)
    assert mock.requests[0].url.path == "/v1/completions"
    first, second = mock.bodies()
    assert first["prompt"] == "count" and first["logprobs"] == 1
    # A completion-only model (no chat template) reads chat turns as one text.
    assert mock.requests[1].url.path == "/v1/completions"
    assert second["prompt"] == "hi"
    assert joined.text


async def test_every_parameter_is_sent(mock: MockOpenAI) -> None:
    async with mock.backend(api_key=KEY, extra_body={"top_k": 20, "n": 5}) as backend:
        request = GenerationRequest(
            messages=(Message(role="system", content="be brief"), Message(role="user", content="hi")),
            n=2, temperature=0.7, top_p=0.9, max_tokens=33, stop=("\n\n", "END"), seed=11, logprobs=True,
        )  # fmt: skip
        await backend.generate(request)

    assert mock.bodies()[0] == {
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
    assert mock.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_n_gives_that_many_choices(mock: MockOpenAI) -> None:
    async with mock.backend() as backend:
        completion = await backend.generate(_ask(n=3, temperature=1.0))

    assert [c.text for c in completion.choices] == ["answer 0 is 42", "answer 1 is 42", "answer 2 is 42"]
    assert completion.completion_tokens == 12


async def test_401_is_not_retried_and_never_leaks_the_key(mock: MockOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    mock.fail(httpx.Response(500, text=f"oops {KEY}"), _error(401, f"Incorrect API key provided: {KEY}."))
    backend = mock.backend(api_key=KEY)

    with caplog.at_level(logging.DEBUG), pytest.raises(BadRequestError) as info:
        await backend.generate(_ask())

    exc = info.value
    assert "HTTP 401" in str(exc) and exc.status == 401
    assert "Incorrect API key provided" in str(exc)
    assert len(mock.requests) == 2  # the 500 was retried, the 401 was not
    assert mock.requests[0].headers["authorization"] == f"Bearer {KEY}"
    leaks = [str(exc), repr(exc), repr(backend), str(backend.describe()), str(vars(backend)), caplog.text]
    assert all(KEY not in text for text in leaks)
    assert exc.__cause__ is None


async def test_other_4xx_fail_at_once_quoting_the_body(mock: MockOpenAI) -> None:
    mock.fail(httpx.Response(400, text="x" * 5000))

    with pytest.raises(BadRequestError, match=r"HTTP 400: x+\.\.\.") as info:
        await mock.backend().generate(_ask())

    assert len(str(info.value)) < 500
    assert len(mock.requests) == 1


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx.Response(429, headers={"Retry-After": "0"}), RateLimitedError),
        (httpx.Response(503, text="busy"), ServerError),
        (httpx.Response(200, text='{"no": "choices"}'), MalformedResponseError),
        (httpx.ConnectError("refused"), BackendConnectionError),
        (httpx.ReadTimeout("stalled"), BackendTimeoutError),
    ],
    ids=["429", "503", "malformed", "connect", "stall"],
)
async def test_each_failure_has_its_type(mock: MockOpenAI, answer: Any, kind: type[BackendError]) -> None:
    mock.fail(answer, answer)
    with pytest.raises(kind, match="failed after 2 attempts") as info:
        await mock.backend(max_attempts=2).generate(_ask())
    assert isinstance(info.value, BackendError)
    assert len(mock.requests) == 2


async def test_a_tool_call_without_a_name_is_a_malformed_response(mock: MockOpenAI) -> None:
    nameless = {"choices": [{"index": 0, "message": {"content": "", "tool_calls": [{"id": "c1", "function": {"arguments": "{}"}}]}}]}
    mock.fail(httpx.Response(200, json=nameless))

    completion = await mock.backend().generate(_ask())  # retried: the second answer is sound

    assert completion.text == "answer 0 is 42"
    mock.fail(*[httpx.Response(200, json=nameless)] * 2)
    with pytest.raises(MalformedResponseError, match="KeyError"):
        await mock.backend(max_attempts=2).generate(_ask())


async def test_a_server_that_ignores_n_is_topped_up_with_seeded_requests_and_remembered() -> None:
    mock = MockOpenAI(responder=_reply, honour_n=False)
    async with mock.backend() as backend:
        completion = await backend.generate(_ask(n=4, temperature=1.0, seed=7))
        assert backend.supports_n is False
        again = await backend.generate(_ask(n=3, temperature=1.0))

    assert len(completion.choices) == 4 and completion.calls == 4
    first, *top_up = mock.bodies()[:4]
    assert first["n"] == 4
    assert [b["n"] for b in top_up] == [1, 1, 1]
    assert sorted(b["seed"] for b in top_up) == [8, 9, 10]  # distinct, so the samples differ
    # Learned once: the next request goes out as single ones straight away.
    assert len(again.choices) == 3
    assert [b["n"] for b in mock.bodies()[4:]] == [1, 1, 1]


async def test_a_refused_json_schema_is_retried_without_it_and_remembered() -> None:
    mock = MockOpenAI(responder=lambda body, i: '{"x": 5}', json_schema=False)
    schema = {"type": "object", "properties": {"x": {"type": "number"}}}
    async with mock.backend() as backend:
        completion = await backend.generate(_ask(json_schema=schema))
        assert backend.supports_json_schema is False
        await backend.generate(_ask(json_schema=schema))

    assert completion.text == '{"x": 5}'
    with_schema, without, later = mock.bodies()
    assert with_schema["response_format"]["type"] == "json_schema"
    assert "response_format" not in without and "response_format" not in later  # not six 500s, two requests


async def test_a_500_that_says_the_request_is_invalid_is_not_retried(mock: MockOpenAI) -> None:
    mock.fail(*[_error(500, "1 validation error: Input should be 'text' or 'json_object'")] * 6)

    with pytest.raises(BadRequestError, match="HTTP 500"):
        await mock.backend().generate(_ask())

    assert len(mock.requests) == 1


async def test_connect_learns_the_model_and_what_a_vllm_server_does() -> None:
    cards = [{"id": "served-model", "object": "model", "owned_by": "vllm"}]
    mock = MockOpenAI(cards)
    # vLLM without a tool parser refuses tools; the probe reads the error's type, not its words.
    mock.fail(httpx.Response(200, json={"object": "list", "data": cards}), _error(400, "unrecognized request argument"))
    backend = await OpenAIBackend(BASE_URL, http_transport=mock.transport()).connect()

    assert backend.model == "served-model"
    assert backend.continue_final is True
    assert backend.supports_tools is False
    assert mock.bodies()[0]["tools"][0]["function"]["name"] == "noop"


async def test_a_failing_server_is_not_taken_for_one_without_tools() -> None:
    cards = [{"id": "m", "owned_by": "vllm"}]
    mock = MockOpenAI(cards)
    mock.fail(httpx.Response(200, json={"object": "list", "data": cards}), httpx.Response(503, text="tool parser crashed"))
    with pytest.raises(ServerError):
        await OpenAIBackend(BASE_URL, http_transport=mock.transport(), max_attempts=1).connect()


async def test_connect_needs_exactly_one_model() -> None:
    mock = MockOpenAI([{"id": "a"}, {"id": "b"}])
    with pytest.raises(BackendError, match=r"several models \(a, b\).*--model-name"):
        await OpenAIBackend(BASE_URL, http_transport=mock.transport()).connect()


async def test_list_models() -> None:
    mock = MockOpenAI([{"id": "model-a"}, {"id": "model-b"}])
    async with mock.backend(None) as backend:
        assert await backend.list_models() == ["model-a", "model-b"]


@pytest.mark.parametrize("key", [f"{KEY}\r", f"{KEY}\n", f" {KEY}", f"sk-\x07{KEY}"])
def test_a_key_with_whitespace_or_control_characters_is_refused_without_showing_it(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BackendError, match="api_key argument") as info:
        OpenAIBackend(BASE_URL, "m", api_key=key)
    assert KEY not in str(info.value) and info.value.__cause__ is None

    monkeypatch.setenv("OPENAI_API_KEY", key)
    with pytest.raises(BackendError, match="OPENAI_API_KEY") as info:
        OpenAIBackend(BASE_URL, "m")
    assert KEY not in str(info.value)


def test_keys_and_url_passwords_are_registered_for_scrubbing() -> None:
    OpenAIBackend("http://user:hunter2-pass@127.0.0.1:9/v1", "m", api_key="sk-registered-0451")
    assert "sk-registered-0451" not in secrets.scrub("echo sk-registered-0451 back")
    assert "hunter2-pass" not in secrets.scrub("password hunter2-pass in a body")


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


async def test_assistant_prefill_is_continued_folded_or_joined() -> None:
    request = GenerationRequest(
        messages=(Message(role="user", content="Q: 1+1?"), Message(role="assistant", content="A: Let's think.")),
        max_tokens=4,
    )
    mock = MockOpenAI()
    for kwargs in ({"continue_final": True}, {}, {"chat": False}):
        async with mock.backend(api_key="k-prefill", **kwargs) as backend:
            await backend.generate(request)
    continued, folded, joined = mock.bodies()
    assert continued["messages"][-1] == {"role": "assistant", "content": "A: Let's think."}
    assert continued["continue_final_message"] is True and continued["add_generation_prompt"] is False
    assert folded["messages"] == [{"role": "user", "content": "Q: 1+1?\nA: Let's think."}]
    assert "continue_final_message" not in folded
    assert joined["prompt"] == "Q: 1+1?\nA: Let's think."


async def test_native_tool_calls_and_structured_output_round_trip() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
    tools = ({"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}},)

    def responder(body: dict[str, Any], index: int) -> Any:
        if "tools" in body:
            return FakeToolCalls([("calculator", {"expression": "2+3"})])
        return '{"x": 5}'

    mock = MockOpenAI(responder=responder)
    async with mock.backend() as backend:
        called = await backend.generate(GenerationRequest(prompt="add", tools=tools))
        history = (
            Message(role="user", content="add"),
            Message(role="assistant", content="", tool_calls=tuple(called.choices[0].tool_calls or ())),
            Message(role="tool", content="5", tool_call_id=called.choices[0].tool_calls[0].id),  # type: ignore[index]
        )
        structured = await backend.generate(GenerationRequest(messages=history, json_schema=schema))
    first, second = mock.bodies()
    assert called.choices[0].tool_calls == [ToolCall(id="call_0_0", name="calculator", arguments='{"expression": "2+3"}')]
    assert called.choices[0].finish_reason == "tool_calls"
    assert first["tools"] == list(tools)
    assert second["messages"][1]["tool_calls"][0]["function"]["name"] == "calculator"
    assert second["messages"][2] == {"role": "tool", "content": "5", "tool_call_id": "call_0_0"}
    assert second["response_format"]["json_schema"]["schema"] == schema
    assert structured.text == '{"x": 5}'


async def test_a_given_transport_carries_every_request(mock: MockOpenAI) -> None:
    from reasoner.backends.transports import Call, Reply, Transport

    class Counting(Transport):
        def __init__(self, inner: Transport) -> None:
            self.inner, self.calls = inner, []  # type: ignore[var-annotated]

        async def send(self, call: Call) -> Reply:
            self.calls.append(call.where)
            return await self.inner.send(call)

    stock = mock.backend()
    counting = Counting(stock.transport)
    backend = OpenAIBackend(BASE_URL, "fake-model", transport=counting)
    assert (await backend.generate(_ask())).text == "answer 0 is 42"
    assert counting.calls == ["POST /chat/completions"]


async def test_a_bank_over_an_http_backend_sees_what_it_learns_on_connect(tmp_path: Any) -> None:
    from reasoner.bank import SampleBank

    cards = [{"id": "served-model", "object": "model", "owned_by": "vllm", "max_model_len": 2048}]
    mock = MockOpenAI(cards)
    # vLLM started without a tool parser refuses the probe: no native tool calls.
    mock.fail(httpx.Response(200, json={"object": "list", "data": cards}), _error(400, "unrecognized request argument"))
    backend = OpenAIBackend(BASE_URL, http_transport=mock.transport())
    bank = SampleBank(backend, tmp_path / "b.bank")  # wrapped before it has connected, as the CLI does
    assert bank.supports_tools and bank.context_window is None  # what an OpenAI-compatible server is assumed to do
    await backend.connect()
    assert not backend.supports_tools and not bank.supports_tools
    assert bank.context_window == backend.context_window == 2048
    assert backend.supports_streaming and not bank.supports_streaming  # the bank answers whole, recorded or replayed
    bank.close()
