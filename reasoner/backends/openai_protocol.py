"""The OpenAI chat/completions wire format: request bodies out, completions (whole or streamed) in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from reasoner.backends import thinking
from reasoner.backends.errors import BackendError, BadRequestError, MalformedResponseError, ServerError
from reasoner.backends.transports import quote
from reasoner.types import Choice, Completion, GenerationRequest, Message, StreamChunk, ToolCall


#: The request field of a cap on reasoning tokens: vLLM's (it needs `--reasoning-parser`, and
#: `--reasoning-config` for models whose think markers are not single tokens).
BUDGET_FIELD = "thinking_token_budget"


def reasoning_of(message: dict[str, Any]) -> str | None:
    """A message's (or delta's) reasoning: `reasoning_content` (DeepSeek, vLLM before 0.10, many
    OpenAI-style APIs) or `reasoning` (vLLM since)."""
    value = message.get("reasoning_content")
    if value is None:
        value = message.get("reasoning")
    return value if isinstance(value, str) else None


def payload(
    request: GenerationRequest,
    *,
    model: str | None,
    chat: bool,
    continue_final: bool,
    json_schema: bool,
    extra_body: dict[str, Any],
    stream: bool = False,
    reasoning_controls: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The JSON body of a (chat) completion request; `json_schema=False` leaves a schema out, and a
    thinking budget goes out only as far as `reasoning_controls` say the server takes it."""
    body: dict[str, Any] = {}
    if model is not None:
        body["model"] = model
    if chat:
        body["messages"] = [message_json(m) for m in request.as_messages(can_prefill=continue_final)]
        if continue_final and request.prefill is not None:
            # vLLM's (and transformers') names for "continue the last assistant turn".
            body.update(continue_final_message=True, add_generation_prompt=False)
    else:
        body["prompt"] = request.as_text()
    body.update(n=request.n, temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_tokens)
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.logprobs:
        body["logprobs"] = True if chat else 1
    if request.tools:
        body["tools"] = list(request.tools)
    if json_schema and request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": request.json_schema, "strict": True},
        }
    if request.reasoning_effort is not None and "effort" in reasoning_controls:
        body["reasoning_effort"] = request.reasoning_effort
    if request.max_reasoning_tokens is not None and "budget" in reasoning_controls:
        body[BUDGET_FIELD] = request.max_reasoning_tokens
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    body.update(extra_body)
    return body


def message_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MalformedResponseError(f"not JSON: {exc}") from None


def parse_completion(body: bytes, chat: bool) -> Completion:
    data = _json(body)
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise MalformedResponseError("no `choices`")
    try:
        choices = [_choice(raw, chat) for raw in sorted(data["choices"], key=lambda c: c.get("index", 0))]
        usage = data.get("usage") or {}
        completion_tokens = int(usage.get("completion_tokens") or 0)
        thinking.share_reasoning_tokens(choices, completion_tokens, reported_reasoning(usage))
        return Completion(
            choices=choices,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=completion_tokens,
            model=data.get("model"),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # KeyError: a tool call without a function name, say.
        raise MalformedResponseError(f"unexpected shape: {type(exc).__name__}: {exc}") from None


def _choice(raw: dict[str, Any], chat: bool) -> Choice:
    message = raw.get("message") or {}
    text = message.get("content") if chat else raw.get("text")
    calls = [
        ToolCall(id=c.get("id") or "", name=c["function"]["name"], arguments=c["function"].get("arguments") or "{}")
        for c in message.get("tool_calls") or []
    ]
    return Choice(
        text=text or "",
        finish_reason=raw.get("finish_reason"),
        token_logprobs=token_logprobs(raw.get("logprobs"), chat),
        tool_calls=calls or None,
        reasoning=reasoning_of(message) if chat else None,
    )


def reported_reasoning(usage: dict[str, Any]) -> int | None:
    """`usage.completion_tokens_details.reasoning_tokens`, where the server reports it."""
    details = usage.get("completion_tokens_details") or {}
    value = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return int(value) if value is not None else None


def token_logprobs(logprobs: Any, chat: bool) -> list[float] | None:
    if not logprobs:
        return None
    if chat:
        return [float(t["logprob"]) for t in logprobs.get("content") or []]
    # The first prompt token has no log-probability when a server echoes the prompt.
    return [float(v) for v in logprobs.get("token_logprobs") or [] if v is not None]


def parse_models(body: bytes) -> list[dict[str, Any]]:
    data = _json(body)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise MalformedResponseError("no `data` list")
    try:
        return [{**card, "id": str(card["id"])} for card in data["data"]]
    except (KeyError, TypeError) as exc:
        raise MalformedResponseError(f"unexpected shape: {exc}") from None


@dataclass
class _Partial:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    logprobs: list[float] | None = None
    finish_reason: str | None = None
    pieces: int = 0
    calls: dict[int, dict[str, str]] = field(default_factory=dict)


class StreamReader:
    """Reads a `stream: true` answer (server-sent events, `data: {json}` lines ending in
    `data: [DONE]`), turning each event into `StreamChunk`s and keeping what the final
    `Completion` needs. Without a usage event (`stream_options.include_usage` is not honoured
    everywhere) the completion tokens are counted as one per content event, as servers send them."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.done = False
        self.model: str | None = None
        self.usage: dict[str, Any] | None = None
        self._choices: dict[int, _Partial] = {}

    def feed(self, line: str) -> list[StreamChunk]:
        if not line.startswith("data:"):
            return []  # blank separators, comments, `event:` and `id:` fields
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return []
        event = _json(data.encode())
        if not isinstance(event, dict):
            raise MalformedResponseError("a stream event that is not an object")
        if "error" in event:
            raise _stream_error(event["error"])
        self.model = event.get("model") or self.model
        if event.get("usage"):
            self.usage = event["usage"]
        try:
            return [chunk for raw in event.get("choices") or [] if (chunk := self._choice(raw)) is not None]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise MalformedResponseError(f"unexpected stream event: {type(exc).__name__}: {exc}") from None

    def _choice(self, raw: dict[str, Any]) -> StreamChunk | None:
        index = int(raw.get("index") or 0)
        partial = self._choices.setdefault(index, _Partial())
        partial.finish_reason = raw.get("finish_reason") or partial.finish_reason
        delta = raw.get("delta") or {}
        text = delta.get("content") if self.chat else raw.get("text")
        reasoning = reasoning_of(delta) if self.chat else None
        for call in delta.get("tool_calls") or []:
            slot = partial.calls.setdefault(int(call.get("index") or 0), {"id": "", "name": "", "arguments": ""})
            function = call.get("function") or {}
            slot["id"] = call.get("id") or slot["id"]
            slot["name"] += function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""
        logprobs = token_logprobs(raw.get("logprobs"), self.chat)
        if logprobs is not None:
            partial.logprobs = (partial.logprobs or []) + logprobs
        if not text and not logprobs and not reasoning:
            return None
        if reasoning:
            partial.reasoning.append(reasoning)  # an event of thinking: one token, as content events are
        if text or not reasoning:  # vLLM sends both in one delta where the thinking ends
            partial.text.append(text or "")
            partial.pieces += 1
        return StreamChunk(index=index, text=text or "", token_logprobs=logprobs, reasoning=reasoning or "")

    @property
    def finished(self) -> bool:
        """Whether the stream said it ended (`[DONE]`, or every choice has its finish reason)."""
        return self.done or bool(self._choices) and all(p.finish_reason for p in self._choices.values())

    def completion(self, latency_s: float) -> Completion:
        if not self._choices:
            raise MalformedResponseError("the stream ended without any choice")
        choices = []
        for index in sorted(self._choices):
            partial = self._choices[index]
            calls = [ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"] or "{}") for c in partial.calls.values()]
            if any(not c.name for c in calls):
                raise MalformedResponseError("a streamed tool call without a function name")
            thought = len(partial.reasoning)
            choices.append(
                Choice(
                    text="".join(partial.text),
                    finish_reason=partial.finish_reason,
                    token_logprobs=partial.logprobs,
                    completion_tokens=None if self.usage else partial.pieces + thought,
                    tool_calls=calls or None,
                    reasoning="".join(partial.reasoning) if thought else None,
                    reasoning_tokens=thought if thought else None,
                    reasoning_count="counted" if thought else None,
                )
            )
        usage = self.usage or {}
        counted = sum(p.pieces + len(p.reasoning) for p in self._choices.values())
        reported = reported_reasoning(usage)
        if reported is not None:  # the server's own count replaces one token per event
            thinking.share_reasoning_tokens(choices, int(usage.get("completion_tokens") or counted), reported)
        return Completion(
            choices=choices,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or counted),
            latency_s=latency_s,
            model=self.model,
        )


def _stream_error(error: Any) -> BackendError:
    message = error.get("message") if isinstance(error, dict) else error
    kind = BadRequestError if isinstance(error, dict) and "invalid" in str(error.get("type")) else ServerError
    return kind(f"the server failed mid-stream: {quote(str(message))}")
