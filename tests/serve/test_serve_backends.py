"""The gateway in front of a backend that is not an HTTP server (here a scripted one, standing in
for the embedded model or vLLM in-process): a passthrough goes as a GenerationRequest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from reasoner.serve import BackgroundGateway, ServeConfig  # noqa: E402
from reasoner.testing.scripted import ScriptedBackend  # noqa: E402
from reasoner.types import Choice, Completion, GenerationRequest, ToolCall  # noqa: E402


class Scripted(ScriptedBackend):
    """Answers 'The answer is 42.'; calls a tool when given tools; remembers what it was asked."""

    async def _generate(self, request: GenerationRequest) -> Completion:
        if request.tools:
            self.requests.append(request)
            call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
            return Completion(choices=[Choice(text="", finish_reason="tool_calls", tool_calls=[call])], prompt_tokens=5, completion_tokens=3)
        return await super()._generate(request)


@pytest.fixture(scope="module")
def scripted() -> Scripted:
    return Scripted([], default="6 times 7 is 42. The answer is 42.")


@pytest.fixture(scope="module")
def api(scripted: Scripted) -> Iterator[openai.OpenAI]:
    async def open_it() -> Scripted:
        return scripted

    with BackgroundGateway(ServeConfig(model="scripted", port=0), open_it) as gw:
        yield openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)


def test_chat_passthrough_as_a_generation_request(api: openai.OpenAI, scripted: Scripted) -> None:
    reply = api.chat.completions.create(model="scripted", messages=[{"role": "developer", "content": "Be brief."},
                                        {"role": "user", "content": "6 * 7?"}], temperature=0.5, max_tokens=20, n=2)  # fmt: skip
    assert [c.message.content for c in reply.choices] == ["6 times 7 is 42. The answer is 42."] * 2
    sent = scripted.requests[-1]
    assert (sent.n, sent.temperature, sent.max_tokens) == (2, 0.5, 20)
    assert sent.messages is not None and [m.role for m in sent.messages] == ["system", "user"]


def test_tool_calls_and_a_tool_turn(api: openai.OpenAI, scripted: Scripted) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
    reply = api.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "Weather?"}], tools=tools)  # type: ignore[arg-type]
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and reply.choices[0].finish_reason == "tool_calls"
    history = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]  # fmt: skip
    api.chat.completions.create(model="scripted", messages=history, tools=tools)  # type: ignore[arg-type]
    sent = scripted.requests[-1].messages
    assert sent is not None and sent[1].tool_calls and sent[1].tool_calls[0].id == "call_1" and sent[2].tool_call_id == "call_1"


def test_streaming_and_a_strategy(api: openai.OpenAI) -> None:
    text = "".join(c.choices[0].delta.content or "" for c in api.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "6 * 7?"}], stream=True) if c.choices)  # fmt: skip
    assert text == "6 times 7 is 42. The answer is 42."
    reply = api.chat.completions.create(model="self-consistency:samples=3/scripted", messages=[{"role": "user", "content": "6 * 7?"}])
    assert reply.model_extra["reasoner"]["answer"] == "42"  # type: ignore[index]
    assert api.completions.create(model="scripted", prompt="6 * 7?").choices[0].text.endswith("42.")
