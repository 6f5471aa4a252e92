"""Particle filtering over reasoning steps: Puri et al. 2025, "A Probabilistic Inference Approach
to Inference-Time Scaling of LLMs using Particle-Based Monte Carlo Methods".

Inference-time scaling as inference in a state-space model: a particle is a partial solution, the
model proposes its next step, and a step verifier (the paper's process reward model; here any
`--verifier`) gives its likelihood. Each step:
1. every unfinished particle is extended by one step; particles with the same steps so far (all
   of them at the start, the copies resampling made later) ask in one request with n;
2. each particle is weighted: the verifier's step scores of its steps so far, reduced by
   `aggregate` (`last` reads a PRM's latest score, `min` suits the arithmetic checker), read as a
   log-weight logit(score) (as the paper's companion library its_hub does), softmaxed over the
   particles at `softmax_temperature` (low sharpens, high flattens towards uniform);
3. `particles` particles are drawn anew from those weights (`resampling`: multinomial, as in the
   paper, or systematic, which spreads the draws evenly: a particle of weight w gets floor(wN) or
   ceil(wN) copies, so particles of equal weight all survive rather than drifting to a few).
A finished particle (its last step gives the answer) is kept as it is, with its last weight, and
takes part in every later resampling. The filter ends once all particles have finished, or at
`depth` steps. The answer is the answer whose particles carry the most weight in sum (`final="vote"`)
or the particle of highest weight's (`final="best"`, its_hub's argmax); a particle with an answer
goes before one cut off at the depth limit. The resampling draws come from a generator seeded by
`seed`, so a seeded run is reproducible.

Defaults chosen on the step simulator (`python -m reasoner.bench.measure.frontier`): systematic
resampling and the weighted vote, because a verifier blind to some errors (the arithmetic checker
and logic slips) weighs right and wrong particles alike; the draws then decide, and multinomial
draws lose particles of equal weight by chance, where systematic ones keep them all.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from reasoner.answers import extract_answer
from reasoner.graph import reason
from reasoner.run import Run
from reasoner.types import Answer
from reasoner.verifiers import Verdict, Verifier, open_verifier
from reasoner.strategies.stepwise import StepSearch, Steps, finished, step_of, step_request

Resampling = Literal["multinomial", "systematic"]
CLIP = 1e-7  # scores are clipped to [CLIP, 1 - CLIP] before the logit, so a 0 or 1 stays finite


def log_weight(score: float) -> float:
    p = min(max(score, CLIP), 1.0 - CLIP)
    return math.log(p / (1.0 - p))


def softmax(logits: Sequence[float], temperature: float = 1.0) -> list[float]:
    if temperature <= 0:
        raise ValueError(f"the softmax temperature must be positive, got {temperature}")
    top = max(logits)
    exps = [math.exp((x - top) / temperature) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def resample(weights: Sequence[float], count: int, rng: random.Random, how: Resampling = "multinomial") -> list[int]:
    """Indices of `count` draws in proportion to `weights` (normalised, summing to 1)."""
    if how == "multinomial":
        return rng.choices(range(len(weights)), weights=weights, k=count)
    if how != "systematic":
        raise ValueError(f"unknown resampling {how!r}; choose multinomial or systematic")
    # One uniform offset, then evenly spaced points through the cumulative weights.
    start, chosen, cumulative, i = rng.random() / count, [], weights[0], 0
    for j in range(count):
        point = start + j / count
        while point > cumulative and i < len(weights) - 1:
            i += 1
            cumulative += weights[i]
        chosen.append(i)
    return chosen


class ParticleFilter(StepSearch):
    name = "particle-filter"
    summary = "Particle filtering over steps (Puri et al. 2025): extend, weight by a step verifier, softmax, resample."

    particles: int = Field(8, ge=1, le=128, description="particles (partial solutions) kept each step")
    depth: int = Field(10, ge=1, le=40, description="most steps in a solution")
    softmax_temperature: float = Field(1.0, gt=0.0, le=100.0, description="temperature of the softmax over the particles' log-weights")
    resampling: Resampling = Field(
        "systematic", description="systematic (lower variance: equal weights keep every particle) or multinomial (the paper's)"
    )
    final: Literal["best", "vote"] = Field("vote", description="vote: the answer of most weight in sum; best: the particle of highest weight")

    async def forward(self, run: Run, question: str) -> Answer:
        verifier = open_verifier(self.verifier)
        rng = random.Random(self.seed)
        particles: list[Steps] = [()] * self.particles
        scores: dict[Steps, float] = {}  # the aggregated score of every state weighed
        history: list[dict[str, object]] = []
        for depth in range(self.depth):
            if all(self.done(p) for p in particles):
                break
            step = run.scope(f"step{depth}")
            asking = Counter(p for p in particles if not self.done(p))
            particles = await self.extend(step, question, particles, asking, depth)
            await self.weigh(step, verifier, question, particles, scores, depth)
            weights = softmax([log_weight(scores[p]) for p in particles], self.softmax_temperature)
            drawn = resample(weights, self.particles, rng, self.resampling)
            history.append({
                "step": depth + 1, "requests": len(asking), "extended": sum(asking.values()), "distinct": len(set(particles)),
                "ess": round(1.0 / sum(w * w for w in weights), 3), "kept": len({particles[i] for i in drawn}),
                "finished": sum(map(self.done, particles)),
            })  # fmt: skip
            particles = [particles[i] for i in drawn]
        return self.conclude(particles, scores, history, verifier.spec)

    async def weigh(self, run: Run, verifier: Verifier, question: str, particles: list[Steps], scores: dict[Steps, float], depth: int) -> None:
        """The score of each state not scored before, into `scores`: each distinct one verified once."""
        scores.update((p, 0.0) for p in particles if p and not p[-1])  # stuck: nothing to verify
        fresh = [p for p in dict.fromkeys(particles) if p not in scores]
        verdicts = await run.gather(*(run.verify(verifier, question, list(p), label=f"weigh{i}") for i, p in enumerate(fresh)), tolerate=True)
        if fresh and not any(isinstance(v, Verdict) for v in verdicts):
            raise RuntimeError(f"every verification at step {depth + 1} failed; first: {reason(verdicts[0])}") from verdicts[0]
        # A failed verification gives its particle the lowest weight, not the question.
        scores.update((p, v.score(self.aggregate) if isinstance(v, Verdict) else 0.0) for p, v in zip(fresh, verdicts))

    def done(self, steps: Steps) -> bool:
        """Finished, or stuck: a particle whose model wrote no step cannot go on."""
        return finished(steps) or (bool(steps) and not steps[-1])

    async def extend(self, run: Run, question: str, particles: list[Steps], asking: Counter[Steps], depth: int) -> list[Steps]:
        """Each unfinished particle one step on; particles sharing their steps (`asking`: each
        prefix with its count) ask as one request with n."""
        replies = await run.gather(*(
            run.generate(step_request(self, question, p, k=self.k, n=count, seed_offset=depth), label=f"extend{i}")
            for i, (p, count) in enumerate(asking.items())
        ))  # fmt: skip
        # The choices of a shared prefix's request go one to each of its copies, in order.
        grown = {p: [step_of(c.text) for c in r.choices] for p, r in zip(asking, replies)}  # type: ignore[union-attr]
        out = []
        for p in particles:
            out.append(p if self.done(p) else (*p, grown[p].pop(0) if grown[p] else ""))
        return out

    def conclude(self, particles: list[Steps], scores: dict[Steps, float], history: list[dict[str, object]], spec: str) -> Answer:
        weights = softmax([log_weight(scores.get(p, 0.0)) for p in particles], self.softmax_temperature)
        said = [extract_answer(p[-1]) if finished(p) else None for p in particles]
        best = max(range(len(particles)), key=lambda i: (said[i] is not None, weights[i]))  # ties: the first
        totals: defaultdict[str, float] = defaultdict(float)
        for answer, w in zip(said, weights):
            if answer is not None:
                totals[answer] += w
        if self.final == "vote" and totals:
            winner = max(totals, key=lambda a: totals[a])
            best = max((i for i in range(len(particles)) if said[i] == winner), key=lambda i: weights[i])
        details = {
            "steps": history, "verifier": spec, "aggregate": self.aggregate, "resampling": self.resampling,
            "answers": said, "weights": [round(w, 6) for w in weights], "totals": {a: round(t, 6) for a, t in totals.items()},
        }  # fmt: skip
        return Answer(answer=said[best], text="\n".join(particles[best]), score=scores.get(particles[best], 0.0), details=details)
