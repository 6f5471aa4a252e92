"""Backtracking from the first mistake (Tyen et al. 2023, "LLMs cannot find reasoning errors, but
can correct them given the mistake location").

Generate a solution (greedy, one step per line); the verifier finds the first wrong step; that
step is sampled again at temperature 1 (`retries` samples in one request; the rejected step itself
is excluded, so the first different sample replaces it), the steps before it are kept, and the
rest is generated greedily from there. Repeat on the new solution, at most `max_backtracks`
times. The paper's location comes from a trained classifier or an oracle; here, any verifier.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from reasoner.answers import extract_answer
from reasoner.graph import Ctx, Forward, Graph, NodeId
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.verifiers import Verdict
from reasoner.strategies.stepwise import (
    Steps, checked_verifier, finished, lines_of, step_of, step_request, verifier_field, verifier_of,
)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


class Backtrack(Strategy):
    name = "backtrack"
    summary = "Generate, let a verifier find the first wrong step, resample that step (temperature 1) and continue from it."

    verifier: str = verifier_field()
    retries: int = Field(4, ge=1, le=32, description="samples of the rejected step drawn to replace it (the rejected one excluded)")
    max_backtracks: int = Field(3, ge=0, le=16, description="most times a solution is corrected")
    step_temperature: float = Field(1.0, ge=0.0, le=2.0, description="temperature of the resampled step")
    k: int = Field(4, ge=0, le=8, description="number of exemplars (GSM8K train problems shipped with the package)")

    _verifier_spec = field_validator("verifier")(classmethod(lambda cls, v: checked_verifier(v)))

    def build(self, graph: Graph, question: str) -> NodeId:
        verifier = verifier_of(self.verifier)
        history: list[dict[str, Any]] = []
        first = graph.generate(step_request(self, question, (), k=self.k, whole=True), label="generate")
        initial: list[Steps] = []

        def check(steps: Steps, round_: int) -> NodeId:
            scope = graph.scope(f"round{round_}")
            verdict = verifier.verify(scope, question, list(steps), label="verify")
            return graph.function(lambda ctx: decide(ctx[verdict], steps, round_), after=[verdict], label=f"decide{round_}")

        def start(ctx: Ctx) -> Forward:
            steps = tuple(lines_of(ctx[first].text))
            initial.append(steps)
            return Forward(check(steps, 0))

        def decide(verdict: Verdict, steps: Steps, round_: int) -> Answer | Forward:
            at = verdict.first_error
            if at is None or round_ >= self.max_backtracks or at >= len(steps):
                return conclude(steps, verdict, round_)
            request = step_request(
                self, question, steps[:at], k=self.k, n=self.retries, temperature=self.step_temperature, seed_offset=round_ + 1
            )
            resample = graph.generate(request, label=f"resample{round_}")
            return Forward(graph.function(lambda ctx: replace(ctx, resample, steps, at, round_, verdict), after=[resample], label=f"replace{round_}"))

        def replace(ctx: Ctx, resample: NodeId, steps: Steps, at: int, round_: int, verdict: Verdict) -> Answer | Forward:
            rejected = steps[at]
            samples = [s for s in (step_of(c.text) for c in ctx[resample].choices) if s]
            chosen = next((s for s in samples if not _same(s, rejected)), None)
            history.append({"round": round_, "step": at, "rejected": rejected, "chosen": chosen, "why": verdict.notes.get(str(at))})
            if chosen is None:  # every sample repeated the rejected step: keep the solution
                return conclude(steps, verdict, round_)
            kept = (*steps[:at], chosen)
            if finished(kept):
                return Forward(check(kept, round_ + 1))
            rest = graph.generate(step_request(self, question, kept, k=self.k, whole=True), label=f"continue{round_}")
            return Forward(
                graph.function(lambda c: Forward(check((*kept, *lines_of(c[rest].text)), round_ + 1)), after=[rest], label=f"join{round_}")
            )

        def conclude(steps: Steps, verdict: Verdict, round_: int) -> Answer:
            text = "\n".join(steps)
            said = extract_answer(steps[-1]) if finished(steps) else extract_answer(text)
            before = initial[0] if initial else steps
            return Answer(
                answer=said,
                text=text,
                score=verdict.score("min"),
                details={
                    "backtracks": history,
                    "rounds": round_,
                    "initial_answer": extract_answer(before[-1]) if finished(before) else extract_answer("\n".join(before)),
                    "initial_text": "\n".join(before),
                    "first_error": verdict.first_error,
                    "verifier": verifier.spec,
                },
            )

        return graph.function(start, after=[first], label="steps")
