"""A plain model name: the request goes to the backend as it is.

An HTTP backend gets the client's JSON body unchanged but for the model name (so tool calls,
`response_format`, `logit_bias` and every field the gateway does not know reach the server), through
the backend's own transport: its connection pools, replica routing, retries and in-flight bound.
Other backends (the embedded model, vLLM in-process) get the request as a `GenerationRequest`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from reasoner import secrets
from reasoner.backends.base import Backend
from reasoner.backends.errors import MalformedResponseError
from reasoner.backends.http import OpenAIBackend
from reasoner.backends.transports import Call
from reasoner.serve import responses
from reasoner.serve.errors import bad_request
from reasoner.serve.masking import EventMasker
from reasoner.serve.schemas import ChatRequest, CompletionRequest
from reasoner.types import Choice, Completion, GenerationRequest, Message, ToolCall, Usage

# What the translated path asks for when the client does not say (OpenAI's sampling defaults).
DEFAULT_MAX_TOKENS = 512


def upstream_body(data: dict[str, Any], backend: OpenAIBackend) -> dict[str, Any]:
    body = {key: value for key, value in data.items() if key != "reasoner"}
    if backend.model is not None:
        body["model"] = backend.model
    return body


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise MalformedResponseError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedResponseError("not a JSON object")
    return data


async def forward(backend: OpenAIBackend, path: str, data: dict[str, Any], model: str) -> dict[str, Any]:
    """The server's answer to the client's body, under the name the client used."""
    async with backend.slots:
        reply = await backend.transport.send(Call("POST", path, upstream_body(data, backend), parse=_json_object))
    answer: dict[str, Any] = reply.data
    answer["model"] = model
    return answer


class ForwardedStream:
    """The server's event stream, line by line. `start` sends the request, so a failure to start
    is still an HTTP error status; the in-flight slot is held until the stream closes."""

    def __init__(self, backend: OpenAIBackend, path: str, data: dict[str, Any]) -> None:
        self.backend, self.path, self.body = backend, path, upstream_body(data, backend)
        self._reply: Any = None
        self._held = False

    async def start(self) -> None:
        await self.backend.slots.acquire()
        self._held = True
        try:
            self._reply = await self.backend.transport.send(Call("POST", self.path, self.body, stream=True))
        except BaseException:
            await self.aclose()
            raise

    async def events(self) -> AsyncIterator[bytes]:
        masker = EventMasker()
        try:
            async for line in self._reply.lines():
                for out in masker.line(line):
                    yield f"{out}\n".encode()
            for out in masker.leftovers():
                yield f"{out}\n".encode()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._reply is not None:
            reply, self._reply = self._reply, None
            await reply.aclose()
        if self._held:
            self._held = False
            self.backend.slots.release()


# -- other backends: the request as a GenerationRequest ------------------------------------------------


def generation_request(request: ChatRequest | CompletionRequest) -> GenerationRequest:
    common: dict[str, Any] = dict(
        n=request.n,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        max_tokens=request.token_limit() or DEFAULT_MAX_TOKENS,
        stop=request.stops(),
        seed=request.seed,
        logprobs=bool(request.logprobs),
        reasoning_effort=request.reasoning_effort,
        max_reasoning_tokens=request.thinking_token_budget,
    )
    if isinstance(request, CompletionRequest):
        return GenerationRequest(prompt=request.prompt_text(), **common)
    schema = None
    if request.response_format and request.response_format.get("type") == "json_schema":
        schema = (request.response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise bad_request("response_format.json_schema.schema must be a JSON schema object", "response_format")
    messages = tuple(_message(m, i) for i, m in enumerate(request.messages))
    return GenerationRequest(messages=messages, tools=tuple(request.tools) if request.tools else None, json_schema=schema, **common)


def _message(message: Any, index: int) -> Message:
    calls = None
    if message.tool_calls:
        try:
            calls = tuple(
                ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments", ""))
                for c in message.tool_calls
            )
        except (KeyError, TypeError):
            raise bad_request("a tool call needs an id and a function name", f"messages.{index}.tool_calls") from None
    role = "system" if message.role == "developer" else message.role
    return Message(role=role, content=message.text(), tool_calls=calls, tool_call_id=message.tool_call_id)


def tool_calls_json(choice: Choice) -> list[dict[str, Any]] | None:
    if not choice.tool_calls:
        return None
    return [
        {"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for i, c in enumerate(choice.tool_calls)
    ]


def _finish(choice: Choice) -> str:
    return "tool_calls" if choice.tool_calls else choice.finish_reason or "stop"


def usage_of(completion: Completion) -> Usage:
    return Usage(
        calls=completion.calls, prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
        reasoning_tokens=completion.reasoning_tokens,
    )


async def generate(backend: Backend, request: ChatRequest | CompletionRequest, kind: responses.Kind) -> dict[str, Any]:
    completion = await backend.generate(generation_request(request))
    choices = [
        responses.choice_json(kind, i, c.text, _finish(c), tool_calls_json(c), reasoning=secrets.scrub(c.reasoning) if c.reasoning else None)
        for i, c in enumerate(completion.choices)
    ]
    return responses.response_json(kind, responses.new_id(kind), request.model, choices, usage_of(completion))


async def stream(backend: Backend, request: ChatRequest | CompletionRequest, kind: responses.Kind) -> AsyncIterator[bytes]:
    rid, model = responses.new_id(kind), request.model
    if kind == "chat":
        yield responses.sse(responses.chunk_json(kind, rid, model, role=True, text=""))
    # A token at a time: a secret in the text comes in pieces, so each choice's text is masked as it grows.
    masks: defaultdict[int, secrets.StreamScrubber] = defaultdict(secrets.StreamScrubber)
    thoughts: defaultdict[int, secrets.StreamScrubber] = defaultdict(secrets.StreamScrubber)
    async for piece in backend.stream(generation_request(request)):
        if piece.completion is None:
            # The thinking as `reasoning_content` deltas, masked apart (chat only: text has no field for it).
            thought = thoughts[piece.index].feed(piece.reasoning) if piece.reasoning and kind == "chat" else ""
            if thought:
                yield responses.sse(responses.chunk_json(kind, rid, model, index=piece.index, reasoning=thought))
            text = masks[piece.index].feed(piece.text) if piece.text else ""
            if text:
                yield responses.sse(responses.chunk_json(kind, rid, model, index=piece.index, text=text))
            continue
        for i, choice in enumerate(piece.completion.choices):
            thought = thoughts.pop(i).flush() if i in thoughts else ""
            if thought:
                yield responses.sse(responses.chunk_json(kind, rid, model, index=i, reasoning=thought))
            held = masks.pop(i).flush() if i in masks else ""
            if held:
                yield responses.sse(responses.chunk_json(kind, rid, model, index=i, text=held))
            yield responses.sse(responses.chunk_json(kind, rid, model, index=i, finish=_finish(choice), tool_calls=tool_calls_json(choice)))
        if request.include_usage():
            yield responses.sse(responses.chunk_json(kind, rid, model, usage=usage_of(piece.completion)))
    yield responses.DONE
