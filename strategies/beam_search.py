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

from pydantic import Field

from reasoner.answers import extract_answer
from reasoner.graph import reason
from reasoner.run import Run
from reasoner.types import Answer
from reasoner.verifiers import Verdict, Verifier, open_verifier
from reasoner.strategies.stepwise import StepSearch, Steps, finished, step_of, step_request

Beam = tuple[int, Steps]  # (subtree, steps so far)
Scored = tuple[int, Steps, float]  # a beam and its verifier's score


class BeamSearch(StepSearch):
    name = "beam-search"
    summary = "Step-level beam search: sample next steps, score partial solutions with a verifier, keep the best (DVTS optional)."

    width: int = Field(4, ge=1, le=64, description="beams kept per level (with dvts: independent subtrees)")
    expansions: int = Field(4, ge=1, le=64, description="next steps sampled per beam (one request with n)")
    depth: int = Field(10, ge=1, le=40, description="most steps in a solution")
    dvts: bool = Field(False, description="diverse verifier tree search: each beam an independent subtree")
    final: Literal["best", "weighted"] = Field(
        "weighted", description="best: the best-scored finished solution; weighted: the answer whose finished solutions score most in sum"
    )

    async def forward(self, run: Run, question: str) -> Answer:
        verifier = open_verifier(self.verifier)
        beams: list[Beam] = [(tree, ()) for tree in range(self.width)]
        done: list[Scored] = []  # every finished solution, to answer with
        closed: list[int] = []  # beams (dvts: subtrees) that ended with a finished solution
        keep: list[Scored] = []
        for depth in range(self.depth):
            fresh = await self.expand(run, question, depth, beams)
            scored = await self.score(run.scope(f"level{depth}"), verifier, question, depth, fresh)
            if self.dvts:  # each open subtree's best child goes on, or ends the subtree if finished
                best = [next(b for b in scored if b[0] == t) for t in dict.fromkeys(b[0] for b in scored) if t not in closed]
            else:  # the best `width` less those already finished go on; finished ones among them end
                best = scored[: max(0, self.width - len(closed))]
            closed += [t for t, steps, _ in best if finished(steps)]
            # Every finished solution is kept to answer with; only those that made the cut end a beam.
            done += [b for b in scored if finished(b[1])]
            keep = [b for b in best if not finished(b[1])]
            if not keep:
                break
            beams = [(t, s) for t, s, _ in keep]
        return self.conclude(depth + 1, done, keep, verifier)

    async def expand(self, run: Run, question: str, depth: int, beams: list[Beam]) -> list[Beam]:
        """Each beam's distinct next steps. The beams' requests start together, so those with one
        prefix (the root's copies) are one request with n."""
        replies = await run.gather(*(
            run.generate(step_request(self, question, steps, k=self.k, n=self.expansions, seed_offset=depth), label=f"expand{depth}")
            for _, steps in beams
        ))
        seen: set[Beam] = set()
        fresh: list[Beam] = []
        for reply, (tree, steps) in zip(replies, beams):
            for choice in reply.choices:
                step = step_of(choice.text)
                key = (tree if self.dvts else 0, (*steps, step))
                if step and key not in seen:
                    seen.add(key)
                    fresh.append((tree, (*steps, step)))
        return fresh

    async def score(self, run: Run, verifier: Verifier, question: str, depth: int, fresh: list[Beam]) -> list[Scored]:
        """The partial solutions the verifier scored, best first. One failed verification costs
        its candidate; all of them failing ends the search with the first failure's reason."""
        verdicts = await run.gather(
            *(run.verify(verifier, question, list(steps), label=f"verify{i}") for i, (_, steps) in enumerate(fresh)), tolerate=True
        )
        scored = [(t, s, v.score(self.aggregate)) for (t, s), v in zip(fresh, verdicts) if isinstance(v, Verdict)]
        if fresh and not scored:
            raise RuntimeError(f"every verification at depth {depth + 1} failed; first: {reason(verdicts[0])}") from verdicts[0]
        scored.sort(key=lambda b: -b[2])  # stable: equal scores keep the order they were sampled in
        return scored

    def conclude(self, levels: int, done: list[Scored], unfinished: list[Scored], verifier: Verifier) -> Answer:
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
