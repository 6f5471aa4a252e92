"""The step simulator taught to critique, revise and aggregate, with set and known skill.

`refine`, `aggregate` and `mixture` ask a model things the step simulator (`steps.py`) does not
answer: to find the first wrong step of a solution, to revise a solution given that feedback, and
to merge several candidate solutions into one. `CritiqueSimulator.respond` recognises those
prompts by the phrases their templates carry (`CRITIQUE`, `REVISE`, `MERGE`; a test keeps the
templates and these in step) and hands every other request to `StepSimulator.respond`. How well
it does each is a parameter, so what the strategies gain is measured against a known skill:

* **critique** (`critique_accuracy` = p): it knows the true first error (the step simulator's
  `first_error`). With probability p it says so: "Step N is wrong: ..." or, for a right solution,
  "All steps are correct."; otherwise it errs — a right solution gets a uniformly drawn step
  called wrong, a wrong one is called correct (the self-critique failure Huang et al. 2024 report).
* **revise** (`revise_rate` = r): the request shows the previous solution and the feedback and is
  begun with the steps kept (those before the named step). With probability r the reviser takes
  the feedback: it writes the next step correctly (given the kept steps' values) and goes on at the
  model's usual slip rates; otherwise it ignores the feedback and writes the rest of the previous
  solution unchanged. A wrong location (a critique that erred) is "fixed" all the same, so a right
  step may be rewritten (and slip) and a wrong one before it stays.
* **merge** (`merge_accuracy` = q): shown k candidate solutions, with probability q it writes out
  the candidate whose answer most candidates reach (ties: the first such), otherwise a uniformly
  drawn candidate; either is copied as written, so a merge is never better than its best candidate.
  Mixture of agents' synthesis prompt is answered the same way.

Randomness comes from the request's seed and choice index and the text judged, so equal requests
give equal answers, as in the step simulator.

    sim = StepSimulator(problems, arith_rate=0.05, logic_rate=0.05)
    critic = CritiqueSimulator(sim, critique_accuracy=0.8, revise_rate=0.8, merge_accuracy=0.9)
    with FakeOpenAIServer(responder=critic.respond) as server: ...
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from reasoner.simulators.steps import StepSimulator, _FINAL, _digest, _request_text, SimProblem

#: The phrases the strategies' templates carry, by which each kind of request is known.
CRITIQUE = "Check this solution one step at a time."
REVISE = "Revise the solution using the feedback"
MERGE = re.compile(r"Combine the candidate solutions|Synthesize these responses")
_SHOWN_STEP = re.compile(r"^Step (\d+): (.*)$", re.MULTILINE)
_CANDIDATE = re.compile(r"^(?:Solution|Response) \d+:[ \t]*$", re.MULTILINE)
WHY = {"arith": "its calculation does not give the value it states.", "logic": "it uses the wrong numbers or operation."}


class CritiqueSimulator:
    def __init__(
        self,
        sim: StepSimulator,
        *,
        critique_accuracy: float = 0.8,
        revise_rate: float = 0.8,
        merge_accuracy: float = 0.9,
        seed: int = 0,
    ) -> None:
        rates = {"critique_accuracy": critique_accuracy, "revise_rate": revise_rate, "merge_accuracy": merge_accuracy}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {rate}")
        self.sim, self.seed = sim, seed
        self.critique_accuracy, self.revise_rate, self.merge_accuracy = critique_accuracy, revise_rate, merge_accuracy
        #: How many requests of each kind were answered (tests and benchmarks read it).
        self.answered: Counter[str] = Counter()
        self._unseeded = itertools.count()

    def respond(self, body: dict[str, Any], index: int) -> str:
        """A FakeOpenAIServer responder: a critique, a revision, a merge, or the step simulator's answer."""
        text = _request_text(body)
        kind = "critique" if CRITIQUE in text else "revise" if REVISE in text else "merge" if MERGE.search(text) else None
        if kind is None:
            self.answered["step"] += 1
            return self.sim.respond(body, index)
        self.answered[kind] += 1
        problem, tail = self.sim.find(text)
        salt = body.get("seed")
        rng = random.Random(_digest(self.seed, kind, tail, f"s{salt}" if salt is not None else f"u{next(self._unseeded)}", index))
        if kind == "critique":
            return self.critique(problem, [m[2].strip() for m in _SHOWN_STEP.finditer(tail)], rng)
        if kind == "revise":
            return self.revise(problem, tail, rng)
        return self.merge(problem, tail, rng)

    def critique(self, problem: SimProblem, steps: Sequence[str], rng: random.Random) -> str:
        found = self.sim.first_error(problem.question, steps) if steps else (0, "logic")
        honest = rng.random() < self.critique_accuracy
        if found is None:
            if honest or not steps:
                return "All steps are correct."
            return f"Step {rng.randrange(len(steps)) + 1} is wrong: {WHY[rng.choice(['arith', 'logic'])]}"
        if not honest:
            return "All steps are correct."
        at, kind = found
        return f"Step {min(at, max(len(steps) - 1, 0)) + 1} is wrong: {WHY[kind]}"

    def revise(self, problem: SimProblem, tail: str, rng: random.Random) -> str:
        shown, _, begun = tail.partition(REVISE)
        previous = _section(shown, "Previous solution:", "Feedback:")
        kept = self.sim.prefix(problem, begun)  # the steps the reply was begun with
        if rng.random() >= self.revise_rate and len(previous) > len(kept):
            return "\n".join(previous[len(kept) :])  # the feedback ignored: the old rest again
        if len(kept) >= len(problem.steps):  # only the answer line was wrong: it is worked out
            return "\n".join(self.sim.continue_from(problem, kept, rng))
        exact = StepSimulator([], arith_rate=0.0, logic_rate=0.0, paraphrase=self.sim.paraphrase)
        fixed = exact.continue_from(problem, kept, rng)[0]
        return "\n".join([fixed, *self.sim.continue_from(problem, [*kept, fixed], rng)])

    def merge(self, problem: SimProblem, tail: str, rng: random.Random) -> str:
        blocks = _CANDIDATE.split(tail)[1:]
        candidates = [[ln.strip() for ln in b.splitlines() if ln.strip() and not MERGE.search(ln)] for b in blocks]
        candidates = [_until_answer(c) for c in candidates if c]
        if not candidates:  # nothing to merge: solve it afresh
            return "\n".join(self.sim.continue_from(problem, [], rng))
        answers = [_said(c) for c in candidates]
        counts = Counter(a for a in answers if a is not None)
        if counts and rng.random() < self.merge_accuracy:
            top = max(counts.values())
            chosen = next(c for c, a in zip(candidates, answers) if a is not None and counts[a] == top)
        else:
            chosen = rng.choice(candidates)
        return "\n".join(chosen)


def _section(text: str, start: str, end: str) -> list[str]:
    """The non-empty lines between the `start` and `end` headings of a prompt."""
    _, _, rest = text.partition(start)
    body, _, _ = rest.partition(end)
    return [ln.strip() for ln in body.splitlines() if ln.strip()]


def _until_answer(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if _FINAL.search(line):
            return lines[: i + 1]
    return lines


def _said(lines: Sequence[str]) -> str | None:
    match = _FINAL.search(lines[-1]) if lines else None
    return match[1] if match else None


__all__ = ["CRITIQUE", "CritiqueSimulator", "MERGE", "REVISE"]
