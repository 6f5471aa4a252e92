"""Reading `stream: true` answers (server-sent events) into StreamChunks, against canned answers.
Streams over real sockets, and leaving one early, are in test_http_transport.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from reasoner.backends.errors import BackendConnectionError, MalformedResponseError, ServerError
from reasoner.backends.openai_protocol import StreamReader
from reasoner.testing.fake_completions import FakeToolCalls
from reasoner.testing.mock_openai import MockOpenAI
from reasoner.types import GenerationRequest, StreamChunk


def _sse(*events: Any) -> httpx.Response:
    text = "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)
    return httpx.Response(200, content=text.encode(), headers={"Content-Type": "text/event-stream"})


async def _chunks(mock: MockOpenAI, request: GenerationRequest, **kwargs: Any) -> list[StreamChunk]:
    async with mock.backend(**kwargs) as backend:
        return [chunk async for chunk in backend.stream(request)]


async def test_streamed_tool_calls_are_assembled() -> None:
    mock = MockOpenAI(responder=lambda body, i: FakeToolCalls([("calculator", {"expression": "6*7"})]))
    tools = ({"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}},)
    *_, last = await _chunks(mock, GenerationRequest(prompt="add", tools=tools))

    assert last.completion is not None
    (call,) = last.completion.choices[0].tool_calls or []
    assert (call.id, call.name, json.loads(call.arguments)) == ("call_0_0", "calculator", {"expression": "6*7"})
    assert last.completion.choices[0].finish_reason == "tool_calls"


async def test_without_a_usage_event_tokens_are_counted_per_event() -> None:
    mock = MockOpenAI()
    head = {"id": "x", "model": "m", "object": "chat.completion.chunk"}
    mock.fail(
        _sse(
            {**head, "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
            {**head, "choices": [{"index": 0, "delta": {"content": "Two"}}]},
            {**head, "choices": [{"index": 0, "delta": {"content": " apples"}, "finish_reason": "length"}]},
            "[DONE]",
        )
    )
    *pieces, last = await _chunks(mock, GenerationRequest(prompt="q"))

    assert [p.text for p in pieces] == ["Two", " apples"]  # the role-only event carries no text
    assert last.completion is not None
    assert (last.completion.text, last.completion.completion_tokens, last.completion.model) == ("Two apples", 2, "m")
    assert last.completion.choices[0].finish_reason == "length"


async def test_an_error_event_mid_stream_is_a_server_error() -> None:
    mock = MockOpenAI()
    mock.fail(_sse({"choices": [{"index": 0, "delta": {"content": "par"}}]}, {"error": {"message": "out of memory", "type": "server_error"}}))
    backend = mock.backend()
    got: list[str] = []
    with pytest.raises(ServerError, match="out of memory"):
        async for chunk in backend.stream(GenerationRequest(prompt="q")):
            got.append(chunk.text)
    assert got == ["par"]


async def test_a_refused_json_schema_at_stream_start_is_dropped_and_remembered() -> None:
    mock = MockOpenAI(responder=lambda body, i: '{"x": 1}', json_schema=False)
    async with mock.backend() as backend:
        chunks = [c async for c in backend.stream(GenerationRequest(prompt="q", json_schema={"type": "object"}))]
        assert backend.supports_json_schema is False
    assert chunks[-1].completion is not None and chunks[-1].completion.text == '{"x": 1}'
    assert ["response_format" in body for body in mock.bodies()] == [True, False]


def test_the_reader_refuses_garbage_and_an_empty_stream() -> None:
    reader = StreamReader(chat=True)
    assert reader.feed(": keep-alive comment") == [] and reader.feed("event: ping") == []
    with pytest.raises(MalformedResponseError):
        reader.feed("data: {not json")
    reader.feed("data: [DONE]")
    assert reader.done
    with pytest.raises(MalformedResponseError, match="without any choice"):
        reader.completion(0.0)


async def test_a_stream_cut_off_before_its_end_is_a_connection_error() -> None:
    mock = MockOpenAI()
    mock.fail(_sse({"choices": [{"index": 0, "delta": {"content": "half a"}}]}))
    with pytest.raises(BackendConnectionError, match="cut off"):
        await _chunks(mock, GenerationRequest(prompt="q"))
