"""What the fake OpenAI server answers: completion bodies, whole or as server-sent events."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Decides the text (or the tool calls) of choice `index` for a parsed request body.
Responder = Callable[[dict[str, Any], int], "str | FakeToolCalls"]
#: The log-probability given to every token of choice `index`, whose text is `text`.
LogprobFn = Callable[[dict[str, Any], int, str], float]

# Whitespace-led words: a cheap stand-in for tokens whose concatenation gives back the text.
_TOKEN = re.compile(r"\s*\S+")


class BadRequest(Exception):
    """The request cannot be answered; the message says why."""


def echo_responder(body: dict[str, Any], index: int) -> str:
    """The default reply: the last few words of the prompt, tagged with the sample index."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        last = str(messages[-1].get("content") or "")
    else:
        last = prompt_text(body.get("prompt"))
    return f"Echo {index}: " + " ".join(last.split()[-20:])


@dataclass(frozen=True)
class FakeToolCalls:
    """A responder's reply that calls tools: [(name, arguments), ...] plus optional text."""

    tool_calls: list[tuple[str, dict[str, Any]]]
    content: str = ""


@dataclass
class Sample:
    """One choice, before it is written out whole or as a stream."""

    index: int
    text: str
    tokens: list[str]
    finish_reason: str
    logprob: float | None  # per token, when asked for
    tool_calls: list[dict[str, Any]] | None
    #: The thinking a reasoning parser took out of the text (the responder's `<think>…</think>`).
    reasoning: str = ""
    reasoning_tokens: list[str] = field(default_factory=list)


@dataclass
class Completed:
    chat: bool
    model: str
    samples: list[Sample]
    prompt_tokens: int
    id: str
    #: The message field a reasoning parser fills ("reasoning_content", or vLLM's "reasoning"); None: no parser.
    reasoning_field: str | None = None

    @property
    def completion_tokens(self) -> int:
        # As servers count them: the thinking is part of the completion.
        return sum(len(s.tokens) + len(s.reasoning_tokens) for s in self.samples)

    def usage(self) -> dict[str, Any]:
        total = self.prompt_tokens + self.completion_tokens
        usage: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}
        if self.reasoning_field is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": sum(len(s.reasoning_tokens) for s in self.samples)}
        return usage

    def body(self) -> dict[str, Any]:
        """The whole completion as one JSON object."""
        choices = []
        for s in self.samples:
            choice: dict[str, Any] = {"index": s.index, "finish_reason": s.finish_reason, "logprobs": None}
            if self.chat:
                choice["message"] = {"role": "assistant", "content": s.text}
                if self.reasoning_field is not None:
                    choice["message"][self.reasoning_field] = s.reasoning or None
                if s.tool_calls:
                    choice["message"]["tool_calls"] = s.tool_calls
            else:
                choice["text"] = s.text
            if s.logprob is not None:
                choice["logprobs"] = _logprobs(self.chat, s.tokens, s.logprob)
            choices.append(choice)
        return {**self._head(), "choices": choices, "usage": self.usage()}

    def events(self, include_usage: bool) -> Iterator[dict[str, Any]]:
        """The completion as stream events: one token of one choice each, then each choice's
        finish, then (when asked) the usage; the caller ends with `data: [DONE]`."""
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        for s in self.samples:
            for token in s.reasoning_tokens:  # the thinking streams first, in its own field
                thought: dict[str, Any] = {"index": s.index, "finish_reason": None, "logprobs": None}
                thought["delta"] = {self.reasoning_field: token}
                if s.logprob is not None:
                    thought["logprobs"] = _logprobs(self.chat, [token], s.logprob)
                yield {**self._head(), "object": kind, "choices": [thought]}
            for token in s.tokens:
                piece: dict[str, Any] = {"index": s.index, "finish_reason": None, "logprobs": None}
                if self.chat:
                    piece["delta"] = {"content": token}
                else:
                    piece["text"] = token
                if s.logprob is not None:
                    piece["logprobs"] = _logprobs(self.chat, [token], s.logprob)
                yield {**self._head(), "object": kind, "choices": [piece]}
        for s in self.samples:
            end: dict[str, Any] = {"index": s.index, "finish_reason": s.finish_reason, "logprobs": None}
            if self.chat:
                end["delta"] = {"tool_calls": [{"index": i, **c} for i, c in enumerate(s.tool_calls)]} if s.tool_calls else {}
            else:
                end["text"] = ""
            yield {**self._head(), "object": kind, "choices": [end]}
        if include_usage:
            yield {**self._head(), "object": kind, "choices": [], "usage": self.usage()}

    def _head(self) -> dict[str, Any]:
        kind = "chat.completion" if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": int(time.time()), "model": self.model}


def complete(
    body: dict[str, Any], chat: bool, responder: Responder, logprob_fn: LogprobFn | None, model: str, serial: int, n_cap: int | None,
    token_chars: int | None = None, reasoning_field: str | None = None,
) -> Completed:
    """Answer a completion request body the way a real server would; `n_cap` limits the choices
    (a server that ignores `n` answers 1); `token_chars` splits words longer than that into
    several tokens, as a subword tokenizer does. With `reasoning_field` (chat only) it is a server
    with a reasoning parser: a reply's `<think>…</think>` goes out in that field, its tokens count
    in `max_tokens` and in the usage (`completion_tokens_details.reasoning_tokens`), and a
    `thinking_token_budget` cuts the thinking there, the answer following (as vLLM ends it)."""
    budget = body.get("thinking_token_budget")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 0):
        raise BadRequest("`thinking_token_budget` must be a non-negative integer")
    if budget is not None and not (chat and reasoning_field):
        raise BadRequest("thinking_token_budget is set but this server has no reasoning parser")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise BadRequest("`n` must be a positive integer")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("`messages` must be a non-empty list")
        text_in = " ".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        want_logprobs = bool(body.get("logprobs"))
    else:
        if "prompt" not in body:
            raise BadRequest("`prompt` is required")
        text_in = prompt_text(body["prompt"])
        want_logprobs = body.get("logprobs") not in (None, False)
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])

    samples = []
    for index in range(min(n, n_cap or n)):
        reply = responder(body, index)
        # A responder may answer a chat request with native tool calls instead of text.
        calls = reply.tool_calls if isinstance(reply, FakeToolCalls) else None
        said: str = reply.content if calls else reply  # type: ignore[union-attr,assignment]
        reasoning, thinking = "", []
        if chat and reasoning_field:
            reasoning, said = _parse_think(said)
            thinking = _tokens(reasoning, token_chars)
            if budget is not None:
                thinking = thinking[:budget]
            if isinstance(max_tokens, int) and 0 < max_tokens <= len(thinking):
                thinking, said = thinking[:max_tokens], ""  # the budget ran out while thinking
            reasoning = "".join(thinking)
        left = max_tokens - len(thinking) if isinstance(max_tokens, int) and thinking else max_tokens
        text, finish_reason, tokens = _finish(said, stops, left, token_chars)
        if thinking and left == 0:
            finish_reason = "length"
        tool_calls = None
        if chat and calls:
            finish_reason = "tool_calls"
            tool_calls = [
                {"id": f"call_{index}_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(calls)
            ]
        logprob = (logprob_fn(body, index, text) if logprob_fn else -0.1) if want_logprobs else None
        samples.append(Sample(index, text, tokens, finish_reason, logprob, tool_calls, reasoning, thinking))
    serial_id = f"{'chatcmpl' if chat else 'cmpl'}-fake{serial}"
    return Completed(chat, body.get("model") or model, samples, len(text_in.split()), serial_id, reasoning_field if chat else None)


def _parse_think(text: str) -> tuple[str, str]:
    """A reasoning parser's split: (thinking, content). Thinking never closed is all thinking."""
    start = text.find("<think>")
    if start < 0:
        return "", text
    end = text.find("</think>", start)
    if end < 0:
        return text[start + len("<think>") :].strip(), ""
    return text[start + len("<think>") : end].strip(), (text[:start] + text[end + len("</think>") :]).strip()


def _tokens(text: str, token_chars: int | None) -> list[str]:
    return (re.compile(rf"\s*\S{{1,{token_chars}}}") if token_chars else _TOKEN).findall(text)


def _logprobs(chat: bool, tokens: list[str], value: float) -> dict[str, Any]:
    if chat:
        return {"content": [{"token": t, "logprob": value, "top_logprobs": []} for t in tokens]}
    return {"tokens": tokens, "token_logprobs": [value] * len(tokens)}


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return " ".join(p for p in prompt if isinstance(p, str))
    return ""


def _finish(text: str, stops: list[str], max_tokens: Any, token_chars: int | None = None) -> tuple[str, str, list[str]]:
    """Apply stop sequences and the token budget the way a real server would."""
    finish_reason = "stop"
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if cuts:
        text = text[: min(cuts)]
    tokens = _tokens(text, token_chars)
    if isinstance(max_tokens, int) and 0 <= max_tokens < len(tokens):
        tokens = tokens[:max_tokens]
        text = "".join(tokens)
        finish_reason = "length"
    return text, finish_reason, tokens
