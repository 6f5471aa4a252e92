"""Self-refine (Madaan et al. 2023, "Self-Refine: Iterative Refinement with Self-Feedback"), as
DSPy's `Refine` and graph-of-thoughts' `ValidateAndImprove` offer it.

Generate a solution (the `inner` strategy, few-shot chain of thought by default); get feedback on
it; revise it with that feedback; repeat, at most `rounds` revisions, stopping as soon as the
feedback accepts the solution. Feedback is either
* a verifier's (`verifier=arith`, `judge`, any spec): its first wrong step and, where it says,
  why (a whole-solution verifier that rejects cannot locate the error: the whole is revised); or
* the model's own critique (no verifier): it is shown the solution as numbered steps and asked
  for the first wrong one, "All steps are correct." ending the loop.
A revision is shown the question, the previous solution and the feedback, and its reply is begun
with the steps before the named wrong step (as Tyen et al. 2023 found a located mistake is what a
model can correct), so it rewrites that step and finishes the solution.

With a verifier the last revision is checked too and the answer is the best-scored version (the
latest among equals), as DSPy's Refine keeps its best attempt; with self-critique the answer is
the latest revision (a critique gives no score to rank by, and a last critique would only cost).
`details["rounds"]` records each round: the feedback, the step it named, whether it accepted, and
whether the revision changed the solution and what it answered.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from reasoner.run import Run
from reasoner.strategy import Strategy, available
from reasoner.types import Answer
from reasoner.verifiers import Verifier, VerifierSpec, open_verifier
from reasoner.strategies.backtrack import said
from reasoner.strategies.common import inner_strategy, strategy_name, templates
from reasoner.strategies.stepwise import Steps, lines_of


def _none_means_critique(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("", "none", "critique", "self") else value


#: An optional verifier spec: none (also "none"/"critique" on a command line) means the model's own critique.
OptionalVerifier = Annotated[VerifierSpec | None, BeforeValidator(_none_means_critique)]

_NAMED = re.compile(r"step\s*(\d+)\s*(?:is\s+|was\s+)?(?:wrong|incorrect|an?\s+(?:error|mistake))", re.IGNORECASE)
_REJECTS = re.compile(r"\b(?:wrong|incorrect|error|mistake)", re.IGNORECASE)
_ACCEPTS = re.compile(r"\bcorrect\b", re.IGNORECASE)


class Feedback(BaseModel):
    """What one round of checking found: accepted, or the wrong step (None: not located)."""

    accepted: bool
    step: int | None = None
    text: str
    score: float | None = None  # a verifier's


def read_critique(text: str, steps: int) -> Feedback:
    """A critique as feedback: "Step N is wrong" locates the error; another rejection does not;
    "correct" without one accepts. An unreadable critique accepts nothing and names no step."""
    said_text = text.strip().splitlines()[0].strip() if text.strip() else ""
    named = _NAMED.search(text)
    if named:
        at = int(named[1]) - 1
        return Feedback(accepted=False, step=at if 0 <= at < steps else None, text=said_text)
    if _REJECTS.search(text):
        return Feedback(accepted=False, text=said_text)
    if _ACCEPTS.search(text):
        return Feedback(accepted=True, text=said_text)
    return Feedback(accepted=False, text=said_text or "(no critique)")


class Refine(Strategy):
    name = "refine"
    summary = "Generate, get feedback (a verifier's first wrong step or the model's own critique), revise; up to `rounds` times."

    rounds: int = Field(2, ge=0, le=8, description="most revisions; the loop stops early once the feedback accepts")
    verifier: OptionalVerifier = Field(
        None, description="verifier spec for the feedback (arith, judge, ...); none: the model critiques its own solution"
    )
    inner: Annotated[str, strategy_name(excluding="refine", what="inner strategy")] = Field(
        "few-shot-cot", description="the strategy that writes the first solution"
    )
    k: int = Field(4, ge=0, le=8, description="exemplars for the first solution, where the inner strategy takes them")
    critique_max_tokens: int = Field(64, ge=1, description="tokens of a critique")

    async def forward(self, run: Run, question: str) -> Answer:
        verifier = open_verifier(self.verifier) if self.verifier else None
        inner = inner_strategy(self, self.inner, **({"k": self.k} if takes_k(self.inner) else {}))
        draft = await run.solve(inner, question, scope="draft")
        steps = initial = tuple(lines_of(draft.text))
        versions: list[tuple[Steps, float | None]] = []
        rounds: list[dict[str, Any]] = []
        for r in range(self.rounds + 1):
            if r == self.rounds and verifier is None:
                break  # the last revision stands: nothing would use a last critique
            scope = run.scope(f"round{r}")
            feedback = await (self.verified(scope, verifier, question, steps) if verifier else self.critique(scope, question, steps))
            versions.append((steps, feedback.score))
            record: dict[str, Any] = {"round": r, "feedback": feedback.text, "step": feedback.step, "accepted": feedback.accepted}
            rounds.append(record)
            if feedback.accepted or r == self.rounds:
                break
            revised = await self.revise(scope, question, steps, feedback, r)
            record.update(changed=revised != steps, answer=said(revised) if revised else None)
            steps = revised
        if verifier is not None and versions:  # the best-scored version, the latest among equals
            steps = max(reversed(versions), key=lambda v: v[1] or 0.0)[0]
        return Answer(
            answer=said(steps) if steps else None,
            text="\n".join(steps),
            score=next((s for v, s in versions if v == steps), None),
            details={
                "rounds": rounds,
                "revisions": sum(1 for r in rounds if "changed" in r),
                "accepted": any(r["accepted"] for r in rounds),
                "initial_answer": said(initial) if initial else None,
                "initial_text": "\n".join(initial),
                "feedback": verifier.spec if verifier else "critique",
            },
        )

    async def verified(self, run: Run, verifier: Verifier, question: str, steps: Steps) -> Feedback:
        verdict = await run.verify(verifier, question, list(steps))
        at = verdict.first_error
        if at is None:
            return Feedback(accepted=True, text="accepted", score=verdict.score("min"))
        why = verdict.notes.get(str(at))
        located = verdict.per_step and at < len(steps)
        text = f"Step {at + 1} is wrong" + (f": {why}" if why else ".") if located else "The solution is wrong."
        return Feedback(accepted=False, step=at if located else None, text=text, score=verdict.score("min"))

    async def critique(self, run: Run, question: str, steps: Steps) -> Feedback:
        prompt = templates.render("refine/critique.j2", question=question, steps=steps)
        reply = await run.generate(self.turn(prompt, max_tokens=self.critique_max_tokens, stop=("\n\n",)), label="critique")
        return read_critique(reply.text, len(steps))

    async def revise(self, run: Run, question: str, steps: Steps, feedback: Feedback, round_: int = 0) -> Steps:
        """The solution rewritten from the named step on (all of it where none is named)."""
        kept = steps[: feedback.step] if feedback.step is not None else ()
        prompt = templates.render("refine/revise.j2", question=question, steps=steps, feedback=feedback.text)
        prefill = templates.render("steps/partial.j2", steps=kept)
        # Each round its own seed: a sampling reviser shown the same feedback again may now take it.
        seed = None if self.seed is None else self.seed + 1 + round_
        reply = await run.generate(self.turn(prompt, prefill, seed=seed, stop=("\nQ:", "\n\n")), label="revise")
        return (*kept, *lines_of(reply.text))


def takes_k(name: str) -> bool:
    """Whether strategy `name` has a `k` (exemplars) option."""
    return "k" in available()[name].model_fields
