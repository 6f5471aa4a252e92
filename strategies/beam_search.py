"""Step-level beam search guided by a verifier (as in Hugging Face's search-and-learn and Snell et
al. 2024, "Scaling LLM Test-Time Compute Optimally"), with diverse verifier tree search (DVTS,
Beeching et al. 2024).

Each level, every beam is expanded by sampling `expansions` next steps (one request with n,
stopped at the end of the line; beams with the same prefix share it); each partial solution is
scored by the verifier, its step scores reduced by `aggregate` (`last`, as search-and-learn does
for a process reward model; `min` suits the arithmetic checker, whose every step counts); the best
`width` are kept. A partial solution that states its answer is finished and set aside; the search
ends once `width` have finished, or at `depth` steps. The answer is the best-scored finished one
(`final="best"`) or, as search-and-learn also reports, the answer whose finished solutions' scores
sum highest (`final="weighted"`: a verifier blind to some errors is outvoted by the others).

DVTS: the `width` beams are independent subtrees; each keeps only its own best child per level,
so one strong prefix cannot crowd the others out.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from pydantic import Field, field_validator

from reasoner.answers import extract_answer
from reasoner.graph import Ctx, Forward, Graph, NodeId
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.verifiers import Aggregation
from reasoner.strategies.stepwise import (
    Steps, aggregate_field, checked_verifier, finished, step_of, step_request, verifier_field, verifier_of,
)

Beam = tuple[int, Steps]  # (subtree, steps so far)


class BeamSearch(Strategy):
    name = "beam-search"
    summary = "Step-level beam search: sample next steps, score partial solutions with a verifier, keep the best (DVTS optional)."

    width: int = Field(4, ge=1, le=64, description="beams kept per level (with dvts: independent subtrees)")
    expansions: int = Field(4, ge=1, le=64, description="next steps sampled per beam (one request with n)")
    depth: int = Field(10, ge=1, le=40, description="most steps in a solution")
    dvts: bool = Field(False, description="diverse verifier tree search: each beam an independent subtree")
    final: Literal["best", "weighted"] = Field(
        "weighted", description="best: the best-scored finished solution; weighted: the answer whose finished solutions score most in sum"
    )
    k: int = Field(4, ge=0, le=8, description="number of exemplars (GSM8K train problems shipped with the package)")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    max_tokens: int = Field(96, ge=1, description="tokens per step")
    verifier: str = verifier_field()
    aggregate: Aggregation = aggregate_field()

    _verifier_spec = field_validator("verifier")(classmethod(lambda cls, v: checked_verifier(v)))

    def build(self, graph: Graph, question: str) -> NodeId:
        verifier = verifier_of(self.verifier)
        done: list[tuple[int, Steps, float]] = []
        closed: list[int] = []  # beams (dvts: subtrees) that ended with a finished solution

        def level(depth: int, beams: list[Beam]) -> NodeId:
            # Beams with one prefix (the root's copies) make identical requests, which merge into one.
            gens = [
                graph.generate(step_request(self, question, steps, k=self.k, n=self.expansions, seed_offset=depth), label=f"expand{depth}")
                for _, steps in beams
            ]

            def candidates(ctx: Ctx) -> Forward:
                seen: set[tuple[int, Steps]] = set()
                fresh: list[Beam] = []
                for gen, (tree, steps) in zip(gens, beams):
                    for choice in ctx[gen].choices:
                        step = step_of(choice.text)
                        key = (tree if self.dvts else 0, (*steps, step))
                        if step and key not in seen:
                            seen.add(key)
                            fresh.append((tree, (*steps, step)))
                scope = graph.scope(f"level{depth}")
                verdicts = [verifier.verify(scope, question, list(steps), label=f"verify{i}") for i, (_, steps) in enumerate(fresh)]
                return Forward(
                    graph.function(lambda c: select(c, depth, fresh, verdicts), after=verdicts, label=f"select{depth}", tolerate_failures=True)
                )

            return graph.function(candidates, after=gens, label=f"candidates{depth}")

        def select(ctx: Ctx, depth: int, fresh: list[Beam], verdicts: list[NodeId]) -> Answer | Forward:
            scored = [(t, s, ctx[v].score(self.aggregate)) for (t, s), v in zip(fresh, verdicts) if ctx.ok(v)]
            if fresh and not scored:
                raise RuntimeError(f"every verification at depth {depth + 1} failed; first: {ctx.error(verdicts[0])}")
            scored.sort(key=lambda b: -b[2])  # stable: equal scores keep the order they were sampled in
            if self.dvts:  # each open subtree's best child goes on, or ends the subtree if finished
                best = [next(b for b in scored if b[0] == t) for t in dict.fromkeys(b[0] for b in scored) if t not in closed]
            else:  # the best `width` less those already finished go on; finished ones among them end
                best = scored[: max(0, self.width - len(closed))]
            for b in best:
                if finished(b[1]):
                    closed.append(b[0])
            # Every finished solution is kept to answer with; only those that made the cut end a beam.
            done.extend(b for b in scored if finished(b[1]))
            keep = [b for b in best if not finished(b[1])]
            if keep and depth + 1 < self.depth:
                return Forward(level(depth + 1, [(t, s) for t, s, _ in keep]))
            return conclude(depth + 1, keep)

        def conclude(levels: int, unfinished: list[tuple[int, Steps, float]]) -> Answer:
            ranked = sorted(done, key=lambda b: -b[2]) or unfinished
            details = {
                "levels": levels,
                "finished": [{"subtree": t, "score": round(sc, 6), "answer": extract_answer(s[-1])} for t, s, sc in ranked[: self.width * 2]],
                "dvts": self.dvts,
                "verifier": verifier.spec,
                "aggregate": self.aggregate,
            }
            if not ranked:
                return Answer(answer=None, text="", details=details)
            _, steps, score = ranked[0]
            answer = extract_answer(steps[-1]) if finished(steps) else None
            if self.final == "weighted" and done:
                totals: dict[str, float] = defaultdict(float)
                for _, s, sc in ranked:
                    if (said := extract_answer(s[-1])) is not None:
                        totals[said] += sc
                if totals:  # ties: the answer of the better-ranked solution
                    answer = max(totals, key=lambda a: totals[a])
                    _, steps, score = next(b for b in ranked if extract_answer(b[1][-1]) == answer)
                    details["totals"] = {a: round(v, 6) for a, v in totals.items()}
            return Answer(answer=answer, text="\n".join(steps), score=score, details=details)

        width = self.width
        return level(0, [(tree, ()) for tree in range(width)])
