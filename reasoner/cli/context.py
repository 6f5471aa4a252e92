"""Fitting a chat's conversation into the model's context window.

Each chat turn hands the strategy one question text: the conversation so far plus the new message.
The strategy wraps it in its own prompt (exemplars, instructions, a ReAct scratchpad that grows a
step at a time) and the model writes up to `max_tokens` a call, so the conversation gets what the
window has left after those. The oldest turns go first; the current message always stays.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reasoner.backends.base import Backend
from reasoner.prompts import Templates
from reasoner.strategy import Strategy
from reasoner.strategies.common import fallback_of
from reasoner.types import Completion, GenerationRequest

templates = Templates("reasoner.cli")

#: The window assumed for a backend that does not say (an HTTP server does not report one).
DEFAULT_WINDOW = 4096
# Chat templates add a few tokens per message, and an estimate may be off: keep this much spare.
SPARE_TOKENS = 64
# What a step of a looping strategy adds beyond the model's own tokens: the tool's observation.
OBSERVATION_TOKENS = 64

TokenCounter = Callable[[str], int]
_DIGIT = re.compile(r"\d")


def estimate_tokens(text: str) -> int:
    """A safe-side count for a tokenizer we cannot run: about 3 bytes a token for words (English
    averages nearer 4), and every digit a token of its own, as SmolLM2's and Llama's tokenizers
    split numbers."""
    return len(text.encode("utf-8")) // 3 + len(_DIGIT.findall(text)) + 1


def token_counter(backend: Backend) -> TokenCounter:
    """The backend's own tokenizer where it runs in this process, else `estimate_tokens`."""
    from reasoner.backends.local import LlamaCppBackend

    if isinstance(backend, LlamaCppBackend):
        llm = backend.llm  # loaded once per process; tokenizing only reads the vocabulary
        return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    return estimate_tokens


def context_window(backend: Backend, given: int | None = None) -> int:
    """`given` (--context-tokens), else the window the backend was opened with, else DEFAULT_WINDOW."""
    return given or backend.context_window or DEFAULT_WINDOW


class _Stop(Exception):
    pass


class _FirstRequest(Backend):
    """Takes the first request a strategy sends and stops the run: the prompt it builds around a
    question, measured without calling the model. It claims what the real backend can do, so the
    strategy builds the same requests it will send."""

    name = "measure"

    def __init__(self, like: Backend) -> None:
        super().__init__(max_in_flight=1)
        self.supports_n, self.supports_tools = like.supports_n, like.supports_tools
        self.supports_json_schema = like.supports_json_schema
        self.first: GenerationRequest | None = None

    async def _generate(self, request: GenerationRequest) -> Completion:
        if self.first is None:
            self.first = request
        raise _Stop()


def request_text(request: GenerationRequest) -> str:
    tools = json.dumps(list(request.tools)) if request.tools else ""
    return request.as_text() + tools


async def strategy_overhead(strategy: Strategy, question: str, backend: Backend, count: TokenCounter) -> int:
    """Tokens the strategy puts around `question` in its first prompt, or in its fallback's
    (`fallback_of`) where that is longer: pal's and flowchart's chain of thought carries exemplars
    their own first prompt does not, and a turn that falls back must fit too."""
    fallback = fallback_of(strategy)
    mine = await _first_prompt_overhead(strategy, question, backend, count)
    return mine if fallback is None else max(mine, await strategy_overhead(fallback, question, backend, count))


async def _first_prompt_overhead(strategy: Strategy, question: str, backend: Backend, count: TokenCounter) -> int:
    probe = _FirstRequest(backend)
    await strategy.solve(question, probe)
    if probe.first is None:
        return 0
    return max(0, count(request_text(probe.first)) - count(question))


def generation_reserve(strategy: Strategy) -> int:
    """Tokens the calls of one turn may add to a prompt: a strategy that loops (ReAct's
    `max_steps`) carries every step's output and observation into its next prompt. A strategy
    whose prompts do not grow that way (flowchart's steps are separate calls) says what it adds.
    Its fallback's reserve counts too, as its prompt does in `strategy_overhead`."""
    fallback = fallback_of(strategy)
    return max(_own_reserve(strategy), 0 if fallback is None else generation_reserve(fallback))


def _own_reserve(strategy: Strategy) -> int:
    own = getattr(strategy, "generation_reserve", None)
    if callable(own):
        return int(own())
    steps = getattr(strategy, "max_steps", 1)
    steps = steps if isinstance(steps, int) and steps > 0 else 1
    return steps * (strategy.max_tokens + (OBSERVATION_TOKENS if steps > 1 else 0))


@dataclass
class Fitted:
    prompt: str  # what the strategy is asked
    kept: int  # earlier turns included
    dropped: int  # earlier turns left out to fit
    budget: int  # tokens the conversation and the message could use


def render(history: Sequence[Any], question: str) -> str:
    if not history:
        return question
    return templates.render("chat_context.j2", turns=list(history), question=question)


def fit(history: Sequence[Any], question: str, budget: int, count: TokenCounter) -> Fitted:
    """The newest turns of `history` (objects with .question and .text) that fit in `budget`
    tokens together with `question`, which is always kept."""
    used = count(render([], question))
    kept = 0
    for turn in reversed(history):
        used += count(f"User: {turn.question}\nAssistant: {turn.text.strip()}\n")
        if used > budget:
            break
        kept += 1
    while True:  # the turns were counted apart; the whole text decides
        prompt = render(history[len(history) - kept:] if kept else [], question)
        if kept == 0 or count(prompt) <= budget:
            return Fitted(prompt=prompt, kept=kept, dropped=len(history) - kept, budget=budget)
        kept -= 1
