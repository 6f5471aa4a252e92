"""Reasoning models: their thinking kept apart from the answer, and its tokens counted apart.

Servers with a reasoning parser (vLLM's `--reasoning-parser`, DeepSeek's and other OpenAI-style
APIs) send the thinking as its own field; the protocol reads it. A model whose thinking comes
inline as `<think>…</think>` in the text (the embedded llama.cpp model, vLLM's engine, a server
started without a parser) is split here by `ThinkTags`, which wraps any backend, so the answer is
always extracted from the final content alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from reasoner.backends.base import Backend, Delegating
from reasoner.types import Choice, Completion, GenerationRequest, StreamChunk

__all__ = ["ThinkSplitter", "ThinkTags", "share_reasoning_tokens", "split_think"]

OPEN, CLOSE = "<think>", "</think>"


def share_reasoning_tokens(choices: list[Choice], completion_tokens: int, reported: int | None) -> None:
    """Set each choice's reasoning token count: the server's `reported` total shared out by the
    length of each choice's reasoning, else an estimate (the choice's share of the completion
    tokens, cut by characters) for choices that have reasoning and no count yet. With a report,
    choices without their own completion count get one (their thinking plus a share of the rest),
    so no sample is billed fewer completion tokens than it spent thinking."""
    if reported is not None:
        thoughts = _shares(reported, [len(c.reasoning or "") for c in choices])
        answers = _shares(max(0, completion_tokens - reported), [len(c.text) for c in choices])
        for choice, thought, answer in zip(choices, thoughts, answers):
            choice.reasoning_tokens, choice.reasoning_count = thought, "reported"
            if choice.completion_tokens is None and len(choices) > 1:
                choice.completion_tokens = thought + answer
        return
    for choice in choices:
        if not choice.reasoning or choice.reasoning_tokens is not None:
            continue
        tokens = choice.completion_tokens if choice.completion_tokens is not None else completion_tokens / max(1, len(choices))
        chars = len(choice.reasoning) / (len(choice.reasoning) + len(choice.text))
        choice.reasoning_tokens = max(1, round(tokens * chars))
        choice.reasoning_count = "estimated"


def _shares(total: int, sizes: list[int]) -> list[int]:
    """`total` split in proportion to `sizes` (evenly if all are 0), adding up to `total` exactly."""
    whole = sum(sizes)
    weights = [s / whole for s in sizes] if whole else [1 / max(1, len(sizes))] * len(sizes)
    # Rounded where the running total stands, so no share is negative and they add up exactly.
    marks, running = [0], 0.0
    for weight in weights:
        running += weight
        marks.append(round(total * running))
    marks[-1] = total
    return [b - a for a, b in zip(marks, marks[1:])]


@dataclass
class ThinkSplitter:
    """Splits text that arrives in pieces into (reasoning, content). A tag cut between two pieces
    is held back until it is whole. `thinking=True` starts inside the thinking block, for chat
    templates that open it in the prompt (DeepSeek-R1's), where the model writes only the close."""

    thinking: bool = False
    opened: str = OPEN
    closed: str = CLOSE
    _held: str = ""
    _done: bool = field(default=False)  # past the close tag: all the rest is content
    _trim: bool = field(default=False)  # just past a tag: the whitespace after it is dropped

    def feed(self, piece: str) -> tuple[str, str]:
        text, self._held = self._held + piece, ""
        reasoning: list[str] = []
        content: list[str] = []
        while text:
            if self._trim:
                text = text.lstrip()
                self._trim = not text
                continue
            if self._done:
                content.append(text)
                break
            tag = self.closed if self.thinking else self.opened
            at = text.find(tag)
            if at >= 0:
                (reasoning if self.thinking else content).append(text[:at])
                text = text[at + len(tag) :]
                self._done = self.thinking
                self.thinking = not self.thinking
                self._trim = True
                continue
            keep = _partial_tag(text, tag)
            (reasoning if self.thinking else content).append(text[: len(text) - keep])
            self._held = text[len(text) - keep :]
            break
        return "".join(reasoning), "".join(content)

    def flush(self) -> tuple[str, str]:
        """What is held back at the end: an unfinished tag is plain text after all."""
        held, self._held = self._held, ""
        return (held, "") if self.thinking else ("", held)


def _partial_tag(text: str, tag: str) -> int:
    """How many of `text`'s last characters begin `tag` (and might be the start of it)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


def split_think(text: str, *, thinking: bool = False) -> tuple[str | None, str]:
    """(reasoning, content) of a whole text; reasoning None where there was none. Thinking that
    was never closed (cut by `max_tokens`) is all reasoning and leaves no content, as vLLM's
    parsers leave it: a half-finished thought is not an answer."""
    splitter = ThinkSplitter(thinking=thinking)
    reasoning, content = splitter.feed(text)
    more_reasoning, more_content = splitter.flush()
    reasoning += more_reasoning
    content += more_content
    seen = reasoning or OPEN in text or CLOSE in text or thinking
    return (reasoning.strip() if seen else None), content.strip() if seen else content


class ThinkTags(Delegating):
    """`inner` with `<think>…</think>` taken out of every choice's text into its `reasoning`
    (streamed too), the reasoning tokens estimated from the split. For models that think inline;
    a choice whose text already has reasoning apart (a server's parser did it) is left alone."""

    def __init__(self, inner: Backend, *, thinking: bool = False) -> None:
        super().__init__(inner)
        self.thinking = thinking

    async def _generate(self, request: GenerationRequest) -> Completion:
        completion = await self.inner.generate(request)
        for choice in completion.choices:
            if choice.reasoning is None:
                choice.reasoning, choice.text = split_think(choice.text, thinking=self.thinking)
        share_reasoning_tokens(completion.choices, completion.completion_tokens, None)
        return completion

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        splitters: dict[int, ThinkSplitter] = {}
        stream = self.inner.stream(request)
        try:
            async for chunk in stream:
                if chunk.completion is not None:
                    for index, splitter in splitters.items():
                        reasoning, text = splitter.flush()
                        if reasoning or text:
                            yield StreamChunk(index=index, text=text, reasoning=reasoning)
                    for choice in chunk.completion.choices:
                        if choice.reasoning is None:
                            choice.reasoning, choice.text = split_think(choice.text, thinking=self.thinking)
                    share_reasoning_tokens(chunk.completion.choices, chunk.completion.completion_tokens, None)
                    yield chunk
                    continue
                if chunk.reasoning or not chunk.text:
                    yield chunk
                    continue
                splitter = splitters.setdefault(chunk.index, ThinkSplitter(thinking=self.thinking))
                reasoning, text = splitter.feed(chunk.text)
                yield StreamChunk(index=chunk.index, text=text, reasoning=reasoning, token_logprobs=chunk.token_logprobs)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "think_tags": True, "thinking_opened": self.thinking}
