"""Backtracking from the first mistake (Tyen et al. 2023, "LLMs cannot find reasoning errors, but
can correct them given the mistake location").

Generate a solution (greedy, one step per line); the verifier finds the first wrong step; that
step is sampled again at temperature 1 (`retries` samples in one request; the rejected step itself
is excluded, so the first different sample replaces it), the steps before it are kept, and the
rest is generated greedily from there. Repeat on the new solution, at most `max_backtracks`
times. The paper's location comes from a trained classifier or an oracle; here, any verifier, the
paper's kind included: `--verifier classifier` (a small trained mistake-finder, `reasoner verifier train`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from reasoner.answers import extract_answer
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.verifiers import VerifierSpec, open_verifier
from reasoner.strategies.stepwise import Steps, finished, lines_of, step_of, step_request, verifier_field


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


class Backtrack(Strategy):
    name = "backtrack"
    summary = "Generate, let a verifier find the first wrong step, resample that step (temperature 1) and continue from it."

    verifier: VerifierSpec = verifier_field()
    retries: int = Field(4, ge=1, le=32, description="samples of the rejected step drawn to replace it (the rejected one excluded)")
    max_backtracks: int = Field(3, ge=0, le=16, description="most times a solution is corrected")
    step_temperature: float = Field(1.0, ge=0.0, le=2.0, description="temperature of the resampled step")
    k: int = Field(4, ge=0, le=8, description="number of exemplars (GSM8K train problems shipped with the package)")

    async def forward(self, run: Run, question: str) -> Answer:
        verifier = open_verifier(self.verifier)
        first = await run.generate(step_request(self, question, (), k=self.k, whole=True), label="generate")
        initial = steps = tuple(lines_of(first.text))
        history: list[dict[str, Any]] = []
        for round_ in range(self.max_backtracks + 1):
            verdict = await run.scope(f"round{round_}").verify(verifier, question, list(steps))
            at = verdict.first_error
            if at is None or round_ == self.max_backtracks or at >= len(steps):
                break
            # Sample the wrong step again, the steps before it kept; the first that differs replaces it.
            request = step_request(
                self, question, steps[:at], k=self.k, n=self.retries, temperature=self.step_temperature, seed_offset=round_ + 1
            )
            resampled = await run.generate(request, label=f"resample{round_}")
            samples = [s for s in (step_of(c.text) for c in resampled.choices) if s]
            chosen = next((s for s in samples if not _same(s, steps[at])), None)
            history.append({"round": round_, "step": at, "rejected": steps[at], "chosen": chosen, "why": verdict.notes.get(str(at))})
            if chosen is None:  # every sample repeated the rejected step: keep the solution
                break
            steps = (*steps[:at], chosen)
            if not finished(steps):  # the rest, greedily, from the corrected step
                rest = await run.generate(step_request(self, question, steps, k=self.k, whole=True), label=f"continue{round_}")
                steps = (*steps, *lines_of(rest.text))
        return Answer(
            answer=said(steps),
            text="\n".join(steps),
            score=verdict.score("min"),
            details={
                "backtracks": history,
                "rounds": round_,
                "initial_answer": said(initial),
                "initial_text": "\n".join(initial),
                "first_error": verdict.first_error,
                "verifier": verifier.spec,
            },
        )


def said(steps: Steps) -> str | None:
    """The answer a solution gives: its last line's where that states it, else the last number."""
    return extract_answer(steps[-1]) if finished(steps) else extract_answer("\n".join(steps))
