"""The step simulator with a critic (reasoner/simulators/critique.py) behind the `server` fixture,
built on first use, and helpers to sort the requests a strategy sent by kind, for the refine,
aggregate and mixture tests."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from reasoner.backends.http import OpenAIBackend
from reasoner.data import Problem, load_gsm8k
from reasoner.simulators.critique import CRITIQUE, MERGE, REVISE, CritiqueSimulator
from reasoner.simulators.steps import StepSimulator, _request_text


class Critic:
    """A CritiqueSimulator over the first GSM8K test questions, made when first asked (so a test
    module can name its responder before GSM8K is looked for)."""

    def __init__(self, *, arith_rate: float = 0.1, logic_rate: float = 0.05, seed: int = 3, **skill: float) -> None:
        self.rates = {"arith_rate": arith_rate, "logic_rate": logic_rate, "seed": seed}
        self.skill = skill

    @cached_property
    def critic(self) -> CritiqueSimulator:
        return CritiqueSimulator(StepSimulator(load_gsm8k("test")[:80], **self.rates), **self.skill)  # type: ignore[arg-type]

    def respond(self, body: dict[str, Any], index: int) -> str:
        return self.critic.respond(body, index)

    def problems(self, count: int) -> list[Problem]:
        sim = self.critic.sim
        return [p for p in load_gsm8k("test")[:80] if sim.usable(p.question)][:count]


def kind_of(body: dict[str, Any]) -> str:
    text = _request_text(body)
    return "critique" if CRITIQUE in text else "revise" if REVISE in text else "merge" if MERGE.search(text) else "solve"


def kinds(requests: list[Any]) -> list[str]:
    """The kind of each completion request the server received, in order."""
    return [kind_of(r.body) for r in requests]


def backend(url: str) -> OpenAIBackend:
    return OpenAIBackend(url, "fake-model")
