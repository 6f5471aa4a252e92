"""OpenAI response bodies and server-sent events, for chat (`chat.completion`) and text
(`text_completion`) requests alike.

Progress while a strategy runs goes out as SSE comments by default —
`: reasoner.progress {"event": ...}` — which every SSE client (the OpenAI SDKs included) skips;
with `reasoner.progress = "events"` it goes as named events (`event: reasoner.progress`), for
clients such as a browser's EventSource that cannot see comments.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from reasoner import secrets
from reasoner.types import Usage

Kind = Literal["chat", "text"]
DONE = b"data: [DONE]\n\n"
PROGRESS_EVENT = "reasoner.progress"
# Final content is sent in pieces of about this many characters, as a model would stream it.
PIECE_CHARS = 64


def new_id(kind: Kind) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"


def usage_json(usage: Usage) -> dict[str, Any]:
    """`usage` over every upstream call: OpenAI's token fields (the thinking of reasoning models in
    `completion_tokens_details`, as OpenAI reports it), and `calls`."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "calls": usage.calls,
    }
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def choice_json(
    kind: Kind, index: int, text: str, finish: str | None, tool_calls: list[dict[str, Any]] | None = None,
    reasoning: str | None = None,
) -> dict[str, Any]:
    """One choice; a reasoning model's thinking goes in the message's `reasoning_content` (chat only:
    a text completion has nowhere to put it apart, so it is left out rather than mixed in)."""
    if kind == "text":
        return {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "finish_reason": finish, "logprobs": None}


def response_json(
    kind: Kind, rid: str, model: str, choices: list[dict[str, Any]], usage: Usage, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return _envelope("chat.completion" if kind == "chat" else "text_completion", rid, model, choices, usage, extra)


def _envelope(
    obj: str, rid: str, model: str, choices: list[dict[str, Any]], usage: Usage | None, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """What a response and a chunk both carry; our own fields only under "reasoner", where SDKs ignore them."""
    body: dict[str, Any] = {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": choices}
    if usage is not None:
        body["usage"] = usage_json(usage)
    if extra:
        body["reasoner"] = extra
    return body


def chunk_json(
    kind: Kind, rid: str, model: str, *, index: int = 0, text: str | None = None, role: bool = False,
    finish: str | None = None, tool_calls: list[dict[str, Any]] | None = None, usage: Usage | None = None,
    extra: dict[str, Any] | None = None, reasoning: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One streamed chunk; with `usage` it is the final usage chunk (no choices), as OpenAI sends it."""
    choices: list[dict[str, Any]] = []
    if usage is None:
        if kind == "text":
            choices.append({"index": index, "text": text or "", "finish_reason": finish, "logprobs": None})
        else:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if reasoning:
                delta["reasoning_content"] = reasoning
            if text is not None:
                delta["content"] = text
            if tool_calls:
                delta["tool_calls"] = tool_calls
            choices.append({"index": index, "delta": delta, "finish_reason": finish, "logprobs": None})
    return _envelope("chat.completion.chunk" if kind == "chat" else "text_completion", rid, model, choices, usage, extra)


def pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def sse(data: dict[str, Any]) -> bytes:
    return f"data: {secrets.scrub(json.dumps(data, separators=(',', ':')))}\n\n".encode()


def progress(event: dict[str, Any], mode: str) -> bytes:
    """A progress event in the form `mode` asks for (see the module's docstring)."""
    text = secrets.scrub(json.dumps(event, separators=(",", ":")))
    if mode == "events":
        return f"event: {PROGRESS_EVENT}\ndata: {text}\n\n".encode()
    return f": {PROGRESS_EVENT} {text}\n\n".encode()
