"""The gateway through the official OpenAI SDK: chat, completions, streaming, strategies with
options, passthrough with tool calls, models and traces."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from serve_support import MODEL, QUESTION, SERVED, client, gateway, upstream  # noqa: F401 (upstream: a fixture)

from reasoner.serve import BackgroundGateway
from reasoner.testing.fake_openai import FakeOpenAIServer

pytestmark = SERVED


@pytest.fixture(scope="module")
def gw(upstream: FakeOpenAIServer) -> Iterator[BackgroundGateway]:
    with gateway(upstream) as running:
        yield running


def test_a_plain_model_name_passes_straight_through(gw: BackgroundGateway, upstream: FakeOpenAIServer) -> None:
    upstream.reset()
    reply = client(gw).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0.3, logit_bias={"50256": -100})
    assert reply.choices[0].message.content == "6 times 7 is 41. The answer is 41."
    sent = upstream.completion_requests()[-1].body
    # Fields the gateway does not model reach the server unchanged.
    assert sent["logit_bias"] == {"50256": -100} and sent["temperature"] == 0.3 and "reasoner" not in sent
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_a_passthrough_keeps_tool_calls(gw: BackgroundGateway, upstream: FakeOpenAIServer) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    reply = client(gw).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                               tools=tools, tool_choice="auto")  # type: ignore[arg-type]  # fmt: skip
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert reply.choices[0].finish_reason == "tool_calls"
    assert upstream.completion_requests()[-1].body["tool_choice"] == "auto"


def test_a_passthrough_streams(gw: BackgroundGateway) -> None:
    stream = client(gw).chat.completions.create(model=MODEL, messages=QUESTION, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "6 times 7 is 41. The answer is 41."


def test_self_consistency_with_options_in_the_model_name(gw: BackgroundGateway, upstream: FakeOpenAIServer) -> None:
    upstream.reset()
    reply = client(gw).chat.completions.create(model=f"self-consistency:samples=8,inner=zero-shot-cot/{MODEL}", messages=QUESTION)
    extra = reply.model_extra["reasoner"]  # type: ignore[index]
    assert extra["strategy"] == "self-consistency" and extra["options"] == {"samples": 8, "inner": "zero-shot-cot"}
    assert extra["answer"] == "42" and extra["details"]["samples_drawn"] == 8
    assert reply.choices[0].message.content and "42" in reply.choices[0].message.content
    # The usage is every upstream call: zero-shot-cot's reasoning (one n=8 request) and its 8 answer extractions.
    sent = upstream.completion_requests()
    assert reply.usage.model_extra["calls"] == len(sent)  # type: ignore[union-attr]
    assert reply.usage.prompt_tokens == sum(_prompt_tokens(r.body) for r in sent)  # type: ignore[union-attr]
    assert sent[0].body["n"] == 8


def _prompt_tokens(body: dict) -> int:  # type: ignore[type-arg]
    # The fake server counts a request's prompt words once, whatever its `n`.
    return sum(len(str(m["content"]).split()) for m in body["messages"])


def test_the_strategy_from_extra_body_and_only_the_final_answer(gw: BackgroundGateway) -> None:
    reply = client(gw).chat.completions.create(
        model=MODEL, messages=QUESTION, extra_body={"reasoner": {"strategy": "self-consistency", "options": {"samples": 4}, "answer": "final"}}
    )
    assert reply.choices[0].message.content == "42"
    assert reply.model_extra["reasoner"]["details"]["votes"] == {"42": 3, "41": 1}  # type: ignore[index]


def test_earlier_messages_are_the_context_of_the_question(gw: BackgroundGateway, upstream: FakeOpenAIServer) -> None:
    upstream.reset()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "I have 6 boxes."},
                {"role": "assistant", "content": "Noted."}, {"role": "user", "content": "Each holds 7. How many?"}]  # fmt: skip
    client(gw).chat.completions.create(model=f"few-shot-cot/{MODEL}", messages=messages)  # type: ignore[arg-type]
    prompt = upstream.completion_requests()[0].body["messages"][-1]["content"]
    assert "I have 6 boxes." in prompt and "Assistant: Noted." in prompt and prompt.rstrip().endswith("A:")
    assert prompt.index("I have 6 boxes.") < prompt.index("Each holds 7. How many?")


def test_a_strategy_streams_progress_then_content(gw: BackgroundGateway) -> None:
    stream = client(gw).chat.completions.create(model=f"zero-shot-cot/{MODEL}", messages=QUESTION, stream=True,
                                                stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "42" in text and chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].usage.model_extra["calls"] == 2  # type: ignore[union-attr]
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish[0].model_extra["reasoner"]["answer"] == "42"  # type: ignore[index]


def test_progress_events_on_the_wire(gw: BackgroundGateway) -> None:
    body = {"model": f"zero-shot-cot/{MODEL}", "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{gw.base_url}/chat/completions", json=body, timeout=10) as response:
        lines = [line for line in response.iter_lines() if line]
    progress = [json.loads(line.split(" ", 2)[2]) for line in lines if line.startswith(": reasoner.progress ")]
    events = [(e["event"], e.get("status")) for e in progress]
    assert events[0] == ("run.start", None) and events[-1] == ("run.end", None)
    assert ("node", "start") in events and ("node", "done") in events
    # Progress comes before the content; the content chunks are ordinary `data:` events.
    first_content = next(i for i, line in enumerate(lines) if line.startswith("data:") and '"content":"' in line and '"content":""' not in line)
    assert max(i for i, line in enumerate(lines) if line.startswith(": reasoner.progress")) < first_content
    assert lines[-1] == "data: [DONE]"
    named = {**body, "reasoner": {"progress": "events", "strategy": "zero-shot-cot"}, "model": MODEL}
    with httpx.stream("POST", f"{gw.base_url}/chat/completions", json=named, timeout=10) as response:
        assert "event: reasoner.progress" in response.read().decode()


def test_text_completions_plain_and_with_a_strategy(gw: BackgroundGateway) -> None:
    api = client(gw)
    plain = api.completions.create(model=MODEL, prompt="What is 6 times 7?")
    assert "The answer is" in plain.choices[0].text
    reasoned = api.completions.create(model=f"self-consistency:samples=4/{MODEL}", prompt="What is 6 times 7?")
    assert reasoned.object == "text_completion" and reasoned.model_extra["reasoner"]["answer"] == "42"  # type: ignore[index]
    streamed = "".join(c.choices[0].text for c in api.completions.create(model=f"few-shot-cot/{MODEL}", prompt="6 * 7?", stream=True) if c.choices)
    assert "The answer is" in streamed


def test_models_and_traces(gw: BackgroundGateway) -> None:
    api = client(gw)
    names = {m.id for m in api.models.list()}
    assert MODEL in names and f"self-consistency/{MODEL}" in names
    reply = api.chat.completions.create(model=f"self-consistency:samples=2/{MODEL}", messages=QUESTION)
    trace_id = reply.model_extra["reasoner"]["trace_id"]  # type: ignore[index]
    trace = httpx.get(f"{gw.base_url}/traces/{trace_id}").json()
    assert trace["id"] == trace_id and trace["strategy"] == "self-consistency" and trace["trace"]["nodes"]
    missing = httpx.get(f"{gw.base_url}/traces/trace-nope")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "trace_id"
    assert httpx.get(gw.base_url.removesuffix("/v1") + "/health").json()["status"] == "ok"
