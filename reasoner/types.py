"""The pydantic models at the project's boundaries: requests, completions, usage, solutions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import PrivateAttr, BaseModel, ConfigDict, Field, model_validator


#: OpenAI's `reasoning_effort` levels (vLLM also takes "none", which turns thinking off).
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]
#: Where a choice's reasoning token count came from: the server's usage, a count of streamed
#: reasoning events (one token each), or an estimate (its share of the text, by characters).
ReasoningCount = Literal["reported", "counted", "estimated"]
_LATER_FIELDS = ("reasoning_effort", "max_reasoning_tokens")


class ToolCall(BaseModel):
    """A native function call the model asked for (OpenAI `tool_calls`)."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] | None = None  # on an assistant turn that called tools
    tool_call_id: str | None = None  # on a tool turn: the call it answers


class GenerationRequest(BaseModel):
    """One call to a model: a prompt text or chat messages, and the sampling parameters."""

    model_config = ConfigDict(frozen=True)

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    n: int = Field(1, ge=1, le=128)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    logprobs: bool = False
    #: OpenAI-style function schemas the model may call (backends with `supports_tools`).
    tools: tuple[dict[str, Any], ...] | None = None
    #: A JSON schema the output must follow (backends with `supports_json_schema`).
    json_schema: dict[str, Any] | None = None
    #: A reasoning model's thinking budget: an effort level and/or a cap on reasoning tokens. Sent
    #: only to backends whose `reasoning_controls` name them ("effort", "budget"); others drop them.
    reasoning_effort: ReasoningEffort | None = None
    max_reasoning_tokens: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a GenerationRequest needs exactly one of `prompt` or `messages`")
        return self

    def singles(self) -> list[GenerationRequest]:
        """The request as `n` requests of one sample each, for a backend that cannot sample `n`:
        a seeded request's copies get seeds `seed + i`, so they still differ."""
        return [self.model_copy(update={"n": 1, "seed": None if self.seed is None else self.seed + i}) for i in range(self.n)]

    def merge_key(self) -> str:
        """Requests with equal keys differ only in `n`, so they can be served by one request."""
        data = self.key_data(exclude={"n"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def key_data(self, exclude: set[str]) -> dict[str, Any]:
        """The request as JSON for keys (merging, the sample bank). Fields added since keys were
        first recorded are left out while unset, so a bank recorded before them still matches."""
        data = self.model_dump(exclude=exclude, mode="json")
        for name in _LATER_FIELDS:
            if data.get(name) is None:
                data.pop(name, None)
        return data

    @property
    def prefill(self) -> str | None:
        """A final assistant message is a prefix for the model to continue, not a finished turn."""
        if self.messages and self.messages[-1].role == "assistant":
            return self.messages[-1].content
        return None

    def as_messages(self, *, can_prefill: bool = True) -> list[Message]:
        """The request as chat messages: a text prompt becomes one user turn.

        A backend that cannot continue a final assistant message (`can_prefill=False`) gets that
        prefix folded into the user turn before it, which is the closest a plain chat API comes.
        """
        if self.messages is None:
            return [Message(role="user", content=self.prompt or "")]
        messages = list(self.messages)
        if not can_prefill and self.prefill is not None and len(messages) > 1:
            last = messages.pop()
            messages[-1] = Message(role=messages[-1].role, content=f"{messages[-1].content}\n{last.content}")
        return messages

    def as_text(self) -> str:
        """The request as one completion prompt: a text prompt as is, chat turns joined by newlines
        (so a user question plus an assistant prefill reads as one continuous text)."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(m.content for m in self.messages or ())


class Choice(BaseModel):
    #: The final content only: what answers are extracted from and scored. Never the reasoning.
    text: str
    finish_reason: str | None = None
    # Per-token log-probabilities of the generated text, present when the request asked for them.
    token_logprobs: list[float] | None = None
    completion_tokens: int | None = None
    tool_calls: list[ToolCall] | None = None
    #: A reasoning model's thinking (`reasoning_content` / `reasoning`), kept apart from `text`.
    reasoning: str | None = None
    #: Of `completion_tokens`, those spent reasoning (servers count them inside completion tokens).
    reasoning_tokens: int | None = None
    reasoning_count: ReasoningCount | None = None

    @property
    def mean_logprob(self) -> float | None:
        if not self.token_logprobs:
            return None
        return sum(self.token_logprobs) / len(self.token_logprobs)

    @property
    def sum_logprob(self) -> float | None:
        return sum(self.token_logprobs) if self.token_logprobs else None


class Completion(BaseModel):
    choices: list[Choice]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    model: str | None = None
    #: Backend requests this completion took (more than one where `n` had to be split up).
    calls: int = 1

    @classmethod
    def joined(cls, parts: Sequence[Completion]) -> Completion:
        """Several requests' completions as one (a request with `n` sent as single requests): their
        choices in order, their tokens and calls summed, the slowest one's latency."""
        return cls(
            choices=[c for p in parts for c in p.choices],
            prompt_tokens=sum(p.prompt_tokens for p in parts),
            completion_tokens=sum(p.completion_tokens for p in parts),
            latency_s=max((p.latency_s for p in parts), default=0.0),
            model=parts[0].model if parts else None,
            calls=sum(p.calls for p in parts),
        )

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""

    @property
    def reasoning(self) -> str | None:
        return self.choices[0].reasoning if self.choices else None

    @property
    def reasoning_tokens(self) -> int:
        """Of `completion_tokens`, those the choices spent reasoning."""
        return sum(c.reasoning_tokens or 0 for c in self.choices)


class StreamChunk(BaseModel):
    """A piece of a streamed completion: new text for one choice, or (last) the whole completion.

    Consumers stop a stream by leaving the `async for` (or `aclose()` on it): the backend then
    cancels the request, so an early-stopped sample costs only the tokens it generated.
    """

    index: int = 0  # which choice of the request the text belongs to
    text: str = ""
    # Log-probabilities of the tokens in `text` (or `reasoning`), when the request asked for them.
    token_logprobs: list[float] | None = None
    #: New reasoning (thinking) text for the choice: never part of `text`.
    reasoning: str = ""
    # Only on the final chunk: every choice whole, with the usage of the request.
    completion: Completion | None = None


class Usage(BaseModel):
    """What a solution cost: backend requests made, tokens in and out, wall time."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    #: Of `completion_tokens`, those a reasoning model spent thinking (counted inside them).
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            latency_s=self.latency_s + other.latency_s,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Answer(BaseModel):
    """What one strategy step concludes: the parsed answer (None = no answer) and the text it came from."""

    answer: str | None
    text: str
    score: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Solution(BaseModel):
    question: str
    strategy: str
    answer: str | None
    text: str
    usage: Usage
    trace: dict[str, Any]
    details: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    #: The exception where a failed run's failure began (not serialised: `error` is its text).
    _cause: BaseException | None = PrivateAttr(None)

    @property
    def cause(self) -> BaseException | None:
        return self._cause
