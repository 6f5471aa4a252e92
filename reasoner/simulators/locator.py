"""Simulated verifiers that know the step simulator's truth, for benchmarks.

`LocatorVerifier` is Tyen et al.'s simulated reward model: of a trace's first error it names the
true location with probability `accuracy`, else a location drawn at random from the wrong ones
(every other step, or "no error"). Register it for a benchmark with
`reasoner.verifiers.register("located", lambda a: LocatorVerifier(sim, float(a)))`, then use
`verifier="located:0.8"`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from reasoner.run import Run
from reasoner.simulators.steps import StepSimulator, _digest
from reasoner.verdict import Verdict, Verifier, lines


class LocatorVerifier(Verifier):
    def __init__(self, sim: StepSimulator, accuracy: float, seed: int = 0) -> None:
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"a locator's accuracy lies in [0, 1], got {accuracy}")
        self.sim, self.accuracy, self.seed = sim, accuracy, seed
        self.spec = f"located:{accuracy}"

    def locate(self, question: str, steps: Sequence[str]) -> int | None:
        found = self.sim.first_error(question, steps)
        truth = None if found is None else min(found[0], len(steps) - 1)
        rng = random.Random(_digest(self.seed, self.accuracy, question, *steps))
        if rng.random() < self.accuracy or not steps:
            return truth
        wrong: list[int | None] = [i for i in range(len(steps)) if i != truth]
        if truth is not None:
            wrong.append(None)
        return rng.choice(wrong) if wrong else truth

    async def verify(self, run: Run, question: str, steps: Sequence[str]) -> Verdict:
        found = lines(steps)
        at = self.locate(question, found)
        return Verdict(verifier=self.spec, steps=found, scores=[0.0 if i == at else 1.0 for i in range(len(found))])
