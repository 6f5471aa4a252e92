"""A backend whose replies are chosen by rules: for unit tests only, never a default."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reasoner.backends.base import Backend
from reasoner.types import Choice, Completion, GenerationRequest

Reply = str | Callable[[GenerationRequest, int], str]


@dataclass
class Rule:
    """When `pattern` is found in the prompt (all messages joined), answer with `reply`.

    `reply` is a fixed text, a list cycled through sample by sample, or a function of the request
    and the sample index (counted across all calls matching this rule).
    """

    pattern: str
    reply: Reply | Sequence[str]
    logprob: float | Sequence[float] | None = None

    def __post_init__(self) -> None:
        self._regex = re.compile(self.pattern, re.S)
        self.hits = 0

    def next_text(self, request: GenerationRequest) -> tuple[str, float | None]:
        i = self.hits
        self.hits += 1
        if callable(self.reply):
            text = self.reply(request, i)
        elif isinstance(self.reply, str):
            text = self.reply
        else:
            text = self.reply[i % len(self.reply)]
        if self.logprob is None or isinstance(self.logprob, (int, float)):
            lp = self.logprob
        else:
            lp = self.logprob[i % len(self.logprob)]
        return text, lp


class ScriptedBackend(Backend):
    name = "scripted"

    def __init__(
        self,
        rules: Sequence[Rule | tuple[str, Reply | Sequence[str]]],
        *,
        supports_n: bool = True,
        max_in_flight: int = 16,
        delay_s: float = 0.0,
        default: str | None = None,
        cut_off: str | None = None,
    ) -> None:
        """`cut_off`: replies to prompts matching this pattern end at their token budget
        (finish_reason "length"), as a server's do."""
        super().__init__(max_in_flight)
        self.rules = [r if isinstance(r, Rule) else Rule(*r) for r in rules]
        self.supports_n = supports_n
        self.delay_s = delay_s
        self.default = default
        self._cut_off = re.compile(cut_off, re.S) if cut_off else None
        self.requests: list[GenerationRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    def _match(self, text: str) -> Rule | None:
        return next((r for r in self.rules if r._regex.search(text)), None)

    async def _generate(self, request: GenerationRequest) -> Completion:
        self.requests.append(request)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            prompt = "\n".join(m.content for m in request.as_messages())  # all messages joined
            rule = self._match(prompt)
            finish = "length" if self._cut_off is not None and self._cut_off.search(prompt) else "stop"
            choices = []
            for _ in range(request.n):
                if rule is None:
                    if self.default is None:
                        raise ValueError(f"no scripted rule matches prompt: {request.as_messages()[-1].content[:200]!r}")
                    text, lp = self.default, None
                else:
                    text, lp = rule.next_text(request)
                ntok = max(1, len(text.split()))
                choices.append(
                    Choice(
                        text=text,
                        finish_reason=finish,
                        completion_tokens=ntok,
                        token_logprobs=[lp / ntok] * ntok if (request.logprobs and lp is not None) else None,
                    )
                )
            prompt_tokens = sum(len(m.content.split()) for m in request.as_messages())
            return Completion(
                choices=choices,
                prompt_tokens=prompt_tokens,
                completion_tokens=sum(c.completion_tokens or 0 for c in choices),
                model="scripted",
            )
        finally:
            self.in_flight -= 1
