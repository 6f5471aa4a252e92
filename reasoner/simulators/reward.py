"""Tyen et al.'s simulated reward model, with wrong answers drawn as the paper drew them.

To ask how good a mistake-finder must be for backtracking to help, the paper simulates one of
accuracy X: on each trace it names the true first-mistake location (or "no mistake") with
probability X, and otherwise a location drawn from the distribution of mistake locations in the
data. `SimulatedRewardModel` does that on the step simulator, which knows every trace's first
error: `locations` is that distribution, an estimate of P(first mistake at step i) with "no
mistake" as `None`, counted on first-pass traces (`mistake_locations`). A wrong answer is drawn
from it with the true answer taken out and the steps the trace does not have left out, so an
X-accurate model is right exactly X of the time. (`locator.LocatorVerifier` draws its wrong
answers uniformly instead.)

    sim = StepSimulator(problems)
    register("simulated", lambda a: SimulatedRewardModel(sim, float(a), locations))
    ... verifier="simulated:0.7"
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from reasoner.run import Run
from reasoner.simulators.steps import StepSimulator, _digest
from reasoner.verdict import Verdict, Verifier, lines

Location = int | None


def mistake_locations(sim: StepSimulator, traces: Iterable[tuple[str, Sequence[str]]]) -> dict[Location, float]:
    """The share of traces whose first mistake is at each step (None: no mistake)."""
    counts: Counter[Location] = Counter()
    for question, steps in traces:
        found = sim.first_error(question, steps)
        counts[None if found is None else min(found[0], len(steps) - 1)] += 1
    total = sum(counts.values())
    if not total:
        raise ValueError("no traces to count mistake locations on")
    return {at: n / total for at, n in counts.items()}


class SimulatedRewardModel(Verifier):
    def __init__(self, sim: StepSimulator, accuracy: float, locations: Mapping[Location, float], seed: int = 0) -> None:
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"a simulated reward model's accuracy lies in [0, 1], got {accuracy}")
        if not locations or any(w < 0 for w in locations.values()):
            raise ValueError("the distribution of mistake locations must be non-empty, with no negative weight")
        self.sim, self.accuracy, self.locations, self.seed = sim, accuracy, dict(locations), seed
        self.spec = f"simulated:{accuracy:g}"

    def truth(self, question: str, steps: Sequence[str]) -> Location:
        found = self.sim.first_error(question, steps)
        return None if found is None else min(found[0], len(steps) - 1)

    def locate(self, question: str, steps: Sequence[str]) -> Location:
        truth = self.truth(question, steps)
        rng = random.Random(_digest("reward", self.seed, self.accuracy, question, *steps))
        if rng.random() < self.accuracy or not steps:
            return truth
        wrong = [(at, w) for at, w in self.locations.items() if at != truth and (at is None or at < len(steps)) and w > 0]
        if not wrong:  # the data name no other location this trace has: any other, evenly
            wrong = [(at, 1.0) for at in [None, *range(len(steps))] if at != truth]
        places, weights = zip(*wrong)
        return rng.choices(places, weights=weights)[0]

    async def verify(self, run: Run, question: str, steps: Sequence[str]) -> Verdict:
        found = lines(steps)
        at = self.locate(question, found)
        return Verdict(verifier=self.spec, steps=found, scores=[0.0 if i == at else 1.0 for i in range(len(found))])
