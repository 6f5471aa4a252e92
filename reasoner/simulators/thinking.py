"""A simulated reasoning model: any responder's reply, preceded by thinking in `<think>…</think>`.

Served by `FakeOpenAIServer(responder=Thinker(inner).respond, reasoning_field="reasoning_content")`
it behaves like a reasoning model behind vLLM's reasoning parser: the thinking comes back in its
own field and its tokens are counted apart. The thinking deliberately names a wrong number first
(a "first guess" that the reply's final number is not), so a client that mistook the thinking for
the answer would score the wrong number: the tests check that none does.

With the server's reasoning parser off (`reasoning_field=None`) the tags stay in the text, as a
model that thinks inline is heard through a server without a parser; `ThinkTags` splits that.

How long it thinks is `think_words` words (a request's `thinking_token_budget` is the server's to
honour: it cuts the thinking there). The thinking does not change the reply: this simulates the
transport and accounting of reasoning, not the accuracy a longer thought buys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from reasoner.testing.fake_completions import FakeToolCalls

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
Responder = Callable[[dict[str, Any], int], "str | FakeToolCalls"]


def decoy(reply: str) -> str:
    """A number that is not the reply's last one (so not its answer): that number plus 17."""
    numbers = _NUMBER.findall(reply)
    last = float(numbers[-1]) if numbers else 0.0
    value = last + 17
    return str(int(value)) if value.is_integer() else f"{value:g}"


class Thinker:
    """Wraps `inner` (StepSimulator.respond, echo_responder, ...): each text reply gets a thought."""

    def __init__(self, inner: Responder, *, think_words: int = 24, closed: bool = True) -> None:
        if think_words < 6:
            raise ValueError(f"think_words must be at least 6 (the thought names its decoy), got {think_words}")
        self.inner = inner
        self.think_words = think_words
        self.closed = closed  # False: the thought is never closed (a model cut off while thinking)

    def thought(self, reply: str) -> str:
        guess = decoy(reply)
        words = [f"First guess: the answer is {guess}.", "Hmm, that cannot be right; let me work it out step by step."]
        text = " ".join(words)
        filler = self.think_words - len(text.split())
        if filler > 0:
            text += " " + " ".join(["checking"] * filler)
        return " ".join(text.split()[: self.think_words])

    def respond(self, body: dict[str, Any], index: int) -> str | FakeToolCalls:
        reply = self.inner(body, index)
        if isinstance(reply, FakeToolCalls):
            return reply
        thought = self.thought(reply)
        if not self.closed:
            return f"<think>{thought} {reply}"
        return f"<think>{thought}</think>\n{reply}"
