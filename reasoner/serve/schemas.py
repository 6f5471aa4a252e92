"""The request bodies the gateway accepts, as pydantic models (unknown fields are kept, so a
passthrough forwards them), and the limits they are checked against."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reasoner.serve.errors import bad_request
from reasoner.types import ReasoningEffort


class ReasonerField(BaseModel):
    """The `reasoner` field of a request (the SDK's `extra_body={"reasoner": {...}}`)."""

    model_config = ConfigDict(extra="forbid")

    strategy: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    #: "reasoning": the chosen reasoning as the content; "final": only the final answer.
    answer: Literal["reasoning", "final"] | None = None
    #: How progress is streamed: SSE comments (every client ignores them) or named SSE events.
    progress: Literal["comments", "events", "none"] = "comments"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The content as text: a list of parts is joined from its text parts."""
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class CommonRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=128)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    reasoner: ReasonerField | None = None
    #: A reasoning model's thinking budget: OpenAI's effort, vLLM's cap on thinking tokens.
    reasoning_effort: ReasoningEffort | None = None
    thinking_token_budget: int | None = Field(None, ge=0)

    def stops(self) -> tuple[str, ...] | None:
        if self.stop is None:
            return None
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatRequest(CommonRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(CommonRequest):
    prompt: str | list[str]
    logprobs: int | None = None

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise bad_request("the gateway takes one prompt per request", "prompt")
        return self.prompt[0]

    def token_limit(self) -> int | None:
        return self.max_tokens


class Limits(BaseModel):
    """What one request may ask for; beyond it, a 400 naming the field."""

    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_input_chars: int = Field(200_000, ge=1)
    max_tokens: int = Field(32_768, ge=1)


def parse(kind: type[CommonRequest], data: Any) -> Any:
    """`data` as a request of `kind`; the first invalid field is named in the 400."""
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", None, "invalid_json")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise bad_request(f"{param}: {first['msg']}", param) from None


def check_limits(request: ChatRequest | CompletionRequest, limits: Limits) -> None:
    if isinstance(request, ChatRequest):
        size = sum(len(m.text()) for m in request.messages)
        field = "messages"
    else:
        size = len(request.prompt) if isinstance(request.prompt, str) else sum(map(len, request.prompt))
        field = "prompt"
    if size > limits.max_input_chars:
        raise bad_request(f"{field} holds {size} characters; this gateway takes at most {limits.max_input_chars}", field,
                          "input_too_large")  # fmt: skip
    limit = request.token_limit()
    if limit is not None and limit > limits.max_tokens:
        name = "max_completion_tokens" if isinstance(request, ChatRequest) and request.max_completion_tokens else "max_tokens"
        raise bad_request(f"{name}={limit} is over this gateway's limit of {limits.max_tokens}", name, "tokens_too_large")
