"""The gateway and reasoning models: a passthrough (forwarded, or translated for a backend that is
not an HTTP server) and a strategy's answer return the thinking as `reasoning_content`, whole or
streamed as deltas, apart from the content, with its tokens in `completion_tokens_details`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from serve_support import MODEL, QUESTION, client, responder

from reasoner.backends.base import Backend
from reasoner.backends.http import OpenAIBackend
from reasoner.backends.thinking import ThinkTags
from reasoner.serve import BackgroundGateway, ServeConfig
from reasoner.simulators.thinking import Thinker
from reasoner.testing.fake_openai import FakeOpenAIServer

THINKER = Thinker(responder)
# The replies' thoughts name 58 and 59 first (each reply's number plus 17): never an answer here.
DECOYS = ("58", "59")


@pytest.fixture(scope="module")
def parsed() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(MODEL, responder=THINKER.respond, reasoning_field="reasoning_content") as server:
        yield server


@pytest.fixture(scope="module")
def inline() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(MODEL, responder=THINKER.respond) as server:
        yield server


def _gateway(server: FakeOpenAIServer, wrap: bool) -> BackgroundGateway:
    async def open_it() -> Backend:
        controls = () if wrap else ("budget", "effort")  # the parser's server takes a budget; the other has none
        backend = await OpenAIBackend(server.base_url, max_attempts=1, reasoning_controls=controls).connect()
        # Wrapped, it is no HTTP backend to the gateway: requests are translated, as for the embedded model.
        return ThinkTags(backend) if wrap else backend

    return BackgroundGateway(ServeConfig(model=server.base_url, port=0), open_it)


@pytest.fixture(scope="module")
def forwarded(parsed: FakeOpenAIServer) -> Iterator[BackgroundGateway]:
    with _gateway(parsed, wrap=False) as gw:
        yield gw


@pytest.fixture(scope="module")
def translated(inline: FakeOpenAIServer) -> Iterator[BackgroundGateway]:
    with _gateway(inline, wrap=True) as gw:
        yield gw


def _extra(obj: Any) -> dict[str, Any]:
    return obj.model_extra or {}


@pytest.mark.parametrize("path", ["forwarded", "translated"])
def test_a_passthrough_returns_the_thinking_apart(path: str, request: pytest.FixtureRequest) -> None:
    gw = request.getfixturevalue(path)
    reply = client(gw).chat.completions.create(model=MODEL, messages=QUESTION, seed=1)
    message = reply.choices[0].message
    assert message.content == "6 times 7 is 41. The answer is 41."
    assert _extra(message)["reasoning_content"] == THINKER.thought(message.content)
    assert "<think>" not in message.content and "58" not in message.content
    assert reply.usage.completion_tokens_details.reasoning_tokens > 0  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["forwarded", "translated"])
def test_a_passthrough_streams_the_thinking_as_deltas(path: str, request: pytest.FixtureRequest) -> None:
    gw = request.getfixturevalue(path)
    chunks = list(client(gw).chat.completions.create(model=MODEL, messages=QUESTION, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thought = "".join(_extra(d).get("reasoning_content") or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert content == "6 times 7 is 41. The answer is 41."
    assert thought.split() == THINKER.thought(content).split()
    # Its own deltas (their order is not checked: secret masking may hold a piece back to the end).
    assert sum(bool(_extra(d).get("reasoning_content")) for d in deltas) >= len(thought.split()) // 2


def test_a_strategy_answers_from_the_content_and_returns_the_winners_thinking(forwarded: BackgroundGateway) -> None:
    reply = client(forwarded).chat.completions.create(model=f"self-consistency:samples=4/{MODEL}", messages=QUESTION)
    extra = _extra(reply)["reasoner"]
    assert extra["answer"] == "42" and extra["answer"] not in DECOYS
    message = reply.choices[0].message
    assert "59" not in (message.content or "")
    assert _extra(message)["reasoning_content"] == THINKER.thought("The answer is 42.")
    # Four samples' thinking, counted apart from (and inside) the completion tokens.
    assert reply.usage.completion_tokens_details.reasoning_tokens == 4 * 24  # type: ignore[union-attr]


def test_a_strategy_stream_sends_the_thinking_before_the_answer(forwarded: BackgroundGateway) -> None:
    chunks = list(client(forwarded).chat.completions.create(model=f"few-shot-cot/{MODEL}", messages=QUESTION, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thought = "".join(_extra(d).get("reasoning_content") or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert thought == THINKER.thought(content) and "answer is 5" in thought  # 58 or 59: the decoy, in the thought only
    assert not any(decoy in content for decoy in DECOYS)


def test_a_text_completion_leaves_the_thinking_out(translated: BackgroundGateway) -> None:
    reply = client(translated).completions.create(model=MODEL, prompt="What is 6 times 7?")
    assert "<think>" not in reply.choices[0].text and "First guess" not in reply.choices[0].text


def test_a_strategy_passes_the_clients_thinking_budget_on(forwarded: BackgroundGateway, parsed: FakeOpenAIServer) -> None:
    parsed.reset()
    reply = client(forwarded).chat.completions.create(
        model=f"few-shot-cot/{MODEL}", messages=QUESTION, reasoning_effort="low", extra_body={"thinking_token_budget": 5}
    )
    sent = parsed.completion_requests()[-1].body
    assert (sent["thinking_token_budget"], sent["reasoning_effort"]) == (5, "low")
    assert reply.usage.completion_tokens_details.reasoning_tokens == 5  # type: ignore[union-attr]
    assert _extra(reply.choices[0].message)["reasoning_content"].split() == THINKER.thought("The answer is 42.").split()[:5]
