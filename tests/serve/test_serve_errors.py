"""The gateway under bad input and upstream failures: OpenAI-style 400s naming the field, 429/502/504
for upstream failures and never a traceback, the API key, the loopback rule, and the upstream key
kept out of every response, trace and log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from serve_support import (  # noqa: F401 (upstream: a fixture)
    ECHO_KEY, MODEL, QUESTION, SERVED, UPSTREAM_KEY, client, gateway, openai, upstream,
)

from reasoner.serve import BackgroundGateway, ServeConfig, ServeError
from reasoner.serve.schemas import Limits
from reasoner.testing.fake_openai import Fault, FakeOpenAIServer

pytestmark = SERVED


@pytest.fixture(scope="module")
def gw(upstream: FakeOpenAIServer) -> Iterator[BackgroundGateway]:
    limits = Limits(max_body_bytes=4096, max_input_chars=1000, max_tokens=1000)
    with gateway(upstream, limits=limits, backend={"deadline_s": 1.0, "api_key": UPSTREAM_KEY}) as running:
        yield running


def post(gw: BackgroundGateway, body: object, path: str = "/chat/completions") -> httpx.Response:
    return httpx.post(f"{gw.base_url}{path}", json=body, timeout=10)


def error_of(response: httpx.Response) -> dict[str, object]:
    assert "Traceback" not in response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": f"no-such-strategy/{MODEL}", "messages": QUESTION}, "model", "unknown_strategy"),
        ({"model": f"self-consistency:samples=lots/{MODEL}", "messages": QUESTION}, "model", "invalid_option"),
        ({"model": f"self-consistency:colour=red/{MODEL}", "messages": QUESTION}, "model", "invalid_option"),
        ({"model": MODEL, "messages": QUESTION, "reasoner": {"strategy": "self-consistency", "options": {"samples": 0}}},
         "reasoner.options.samples", "invalid_value"),
        ({"model": MODEL, "messages": QUESTION, "reasoner": {"options": {"samples": 4}}}, "reasoner.options", "invalid_value"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x" * 1001}]}, "messages", "input_too_large"),
        ({"model": MODEL, "messages": QUESTION, "max_tokens": 5000}, "max_tokens", "tokens_too_large"),
        ({"model": MODEL, "messages": QUESTION, "temperature": 7}, "temperature", "invalid_value"),
        ({"model": MODEL, "messages": []}, "messages", "invalid_value"),
        ({"model": f"few-shot-cot/{MODEL}", "messages": [*QUESTION, {"role": "assistant", "content": "Hm"}]},
         "messages.1.role", "invalid_value"),
        ({"model": f"few-shot-cot/{MODEL}", "messages": QUESTION, "n": 3}, "n", "invalid_value"),
        ({"model": f"self-consistency/{MODEL}", "messages": QUESTION, "stream": True, "max_tokens": 5000}, "max_tokens", "tokens_too_large"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_400_naming_the_field(gw: BackgroundGateway, body: dict[str, object], param: str, code: str) -> None:
    response = post(gw, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_the_sdk_raises_a_bad_request_error_with_the_body(gw: BackgroundGateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw).chat.completions.create(model=f"self-consistency:samples=lots/{MODEL}", messages=QUESTION)  # type: ignore[arg-type]
    assert caught.value.body["param"] == "model" and "samples" in caught.value.body["message"]  # type: ignore[index]


def test_an_oversize_body_and_a_body_that_is_not_json(gw: BackgroundGateway) -> None:
    big = post(gw, {"model": MODEL, "messages": QUESTION, "padding": "x" * 5000})
    assert big.status_code == 400 and error_of(big)["param"] == "body"
    broken = httpx.post(f"{gw.base_url}/chat/completions", content=b"{not json", timeout=10)
    assert broken.status_code == 400 and error_of(broken)["code"] == "invalid_json"


def test_unknown_model_and_path(gw: BackgroundGateway) -> None:
    unknown = post(gw, {"model": "gpt-9", "messages": QUESTION})
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "model_not_found"
    nowhere = httpx.get(f"{gw.base_url}/nowhere", timeout=10)
    assert nowhere.status_code == 404 and error_of(nowhere)["code"] == "not_found"


@pytest.mark.parametrize(
    ("fault", "status", "kind"),
    [
        (Fault.status(429, headers={"Retry-After": "3"}), 429, "rate_limit_error"),
        (Fault.status(503), 502, "upstream_error"),
        (Fault.drop(), 502, "upstream_error"),
        (Fault.malformed(), 502, "upstream_error"),
        (Fault.delay(3), 504, "timeout_error"),
    ],
)
# self-consistency's samples all fail in one request with n: its vote raises, from the failures,
# and the gateway still answers by the upstream's error type, read from the graph.
@pytest.mark.parametrize("model", [MODEL, f"zero-shot-cot/{MODEL}", f"self-consistency:samples=2/{MODEL}"])
def test_upstream_failures_map_to_their_status(
    gw: BackgroundGateway, upstream: FakeOpenAIServer, fault: Fault, status: int, kind: str, model: str
) -> None:
    upstream.reset()
    upstream.add_faults(fault)
    response = post(gw, {"model": model, "messages": QUESTION})
    upstream.reset()
    assert response.status_code == status, response.text
    assert error_of(response)["type"] == kind
    if status == 429:
        assert response.headers["retry-after"] == "3"


def test_an_upstream_refusal_of_the_clients_request_is_passed_on(gw: BackgroundGateway, upstream: FakeOpenAIServer) -> None:
    upstream.reset()
    upstream.add_faults(Fault.status(400, {"error": {"message": "unsupported parameter: frobnicate"}}))
    response = post(gw, {"model": MODEL, "messages": QUESTION, "frobnicate": True})
    assert response.status_code == 400 and "frobnicate" in str(error_of(response)["message"])


def test_a_streamed_strategy_that_fails_after_the_start_ends_with_an_error_event(
    gw: BackgroundGateway, upstream: FakeOpenAIServer
) -> None:
    upstream.reset()
    upstream.add_faults(Fault.status(503))
    with pytest.raises(openai.APIError) as caught:
        list(client(gw).chat.completions.create(model=f"few-shot-cot/{MODEL}", messages=QUESTION, stream=True))  # type: ignore[arg-type]
    assert "upstream" in str(caught.value)


def test_the_upstream_key_is_never_in_a_response_a_trace_or_a_log(
    gw: BackgroundGateway, upstream: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.reset()
    # A server that echoes the key back, as OpenAI's 401 does.
    assert upstream.completion_requests() == []
    upstream.add_faults(Fault.status(401, f"Incorrect API key provided: {UPSTREAM_KEY}"))
    refused = post(gw, {"model": MODEL, "messages": QUESTION})
    upstream.add_faults(Fault.status(401, f"Incorrect API key provided: {UPSTREAM_KEY}"))
    failed = post(gw, {"model": f"few-shot-cot/{MODEL}", "messages": QUESTION})
    upstream.add_faults(Fault.malformed(f'{{"choices": [{{"index": 0, "message": {{"role": "assistant", "content": "{UPSTREAM_KEY}"}}, "finish_reason": "stop"}}]}}'))
    answered = post(gw, {"model": f"few-shot-cot/{MODEL}", "messages": QUESTION})
    trace = httpx.get(f"{gw.base_url}/traces/{answered.json()['reasoner']['trace_id']}", timeout=10)
    echo = [{"role": "user", "content": ECHO_KEY}]
    streamed = ["".join(chunk.choices[0].delta.content or "" for chunk in client(gw).chat.completions.create(
        model=model, messages=echo, stream=True) if chunk.choices) for model in (MODEL, f"few-shot-cot/{MODEL}")]  # type: ignore[arg-type]  # fmt: skip
    assert all("Your key is ***" in text for text in streamed), streamed
    assert upstream.completion_requests()[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert refused.status_code == 502 and failed.status_code == 502 and answered.status_code == 200
    for text in (refused.text, failed.text, answered.text, trace.text, *streamed, caplog.text):
        assert UPSTREAM_KEY not in text


def test_an_api_key_is_required_when_given(upstream: FakeOpenAIServer) -> None:
    with gateway(upstream, api_key="gateway-key-123456") as gw:
        with pytest.raises(openai.AuthenticationError):
            client(gw, api_key="wrong-key-000000").models.list()
        with pytest.raises(openai.AuthenticationError):
            client(gw, api_key="wrong-key-000000").chat.completions.create(model=MODEL, messages=QUESTION)  # type: ignore[arg-type]
        assert httpx.get(f"{gw.base_url}/models", timeout=10).status_code == 401
        assert client(gw, api_key="gateway-key-123456").chat.completions.create(model=MODEL, messages=QUESTION).choices  # type: ignore[arg-type]


def test_a_non_loopback_address_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ServeError, match="without an API key"):
        ServeConfig(host="0.0.0.0").checked()
    assert ServeConfig(host="::1").checked().host == "::1"
    assert ServeConfig(host="0.0.0.0", api_key="gateway-key-123456").checked().api_key is not None  # type: ignore[arg-type]


def test_the_cli_refuses_a_public_address_without_a_key(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from reasoner.cli.main import main

    monkeypatch.delenv("REASONER_SERVE_API_KEY", raising=False)
    assert main(["serve", "--model", "http://127.0.0.1:9/v1", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "without an API key" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--max-waiting", "-1"], "argument --max-waiting: must be at least 0, got -1"),
        (["--max-runs", "0"], "argument --max-runs: must be at least 1, got 0"),
        (["--port", "70000"], "argument --port: must be from 0 to 65535, got 70000"),
        (["--max-body-bytes", "lots"], "argument --max-body-bytes: expected a whole number, got 'lots'"),
    ],
)
def test_a_bad_number_is_refused_naming_its_flag(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    from reasoner.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--model", "http://127.0.0.1:9/v1", *argv])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and says in err and "pydantic" not in err
