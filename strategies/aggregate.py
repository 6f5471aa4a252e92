"""Aggregation of thoughts (Besta et al. 2024, "Graph of Thoughts: Solving Elaborate Problems
with Large Language Models"): several candidate solutions merged into one by a model call.

`candidates` solutions are drawn from the `inner` strategy (few-shot chain of thought by default)
at `temperature`; their identical first calls start together, so the engine sends them as one
request with n. The model is then shown them all and asked to combine them into one solution,
keeping what is right where they disagree (graph-of-thoughts' aggregation transformation, the
candidates' vertices joined into one). `merges` merged solutions are drawn (one request with n;
greedy when there is one) and scored: by `verifier` where one is given (steps reduced by `min`),
the best-scored merge kept, as graph-of-thoughts scores and keeps the best thoughts; without a
verifier, several merges vote (the most frequent answer, the first merge giving it standing for
it). A merge that gives no answer loses to one that does.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from pydantic import Field

from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.verifiers import Verdict, open_verifier
from reasoner.strategies.backtrack import said
from reasoner.strategies.common import inner_strategy, strategy_name, templates
from reasoner.strategies.refine import OptionalVerifier, takes_k
from reasoner.strategies.stepwise import Steps, lines_of, succeeded


class Aggregate(Strategy):
    name = "aggregate"
    summary = "Graph-of-thoughts aggregation: k sampled solutions merged into one by a model call, then scored."

    candidates: int = Field(4, ge=1, le=32, description="candidate solutions sampled to merge (one request with n)")
    merges: int = Field(1, ge=1, le=16, description="merged solutions drawn (one request with n); the best-scored, or the vote, answers")
    inner: Annotated[str, strategy_name(excluding="aggregate", what="inner strategy")] = Field(
        "few-shot-cot", description="the strategy the candidates are sampled from"
    )
    k: int = Field(4, ge=0, le=8, description="exemplars for the candidates, where the inner strategy takes them")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature of the candidates (and of several merges)")
    verifier: OptionalVerifier = Field(None, description="verifier spec that scores the merged solutions; none: several merges vote")

    async def forward(self, run: Run, question: str) -> Answer:
        verifier = open_verifier(self.verifier) if self.verifier else None
        inner = inner_strategy(self, self.inner, **({"k": self.k} if takes_k(self.inner) else {}))
        drawn = await run.gather(*(run.solve(inner, question, scope=f"candidate{i}") for i in range(self.candidates)), tolerate=True)
        candidates = [tuple(lines_of(a.text)) for a in succeeded(drawn, "candidate")]
        shown = [c for c in candidates if c]
        details: dict[str, object] = {"candidate_answers": [said(c) if c else None for c in candidates]}
        if not shown:
            return Answer(answer=None, text="", details={**details, "why": "no candidate wrote a solution"})
        prompt = templates.render("aggregate/merge.j2", question=question, candidates=shown)
        temperature = self.temperature if self.merges > 1 else 0.0
        reply = await run.generate(self.turn(prompt, n=self.merges, temperature=temperature, stop=("\nQ:", "\n\n")), label="merge")
        merged: list[Steps] = [tuple(lines_of(c.text)) for c in reply.choices]
        answers = [said(m) if m else None for m in merged]
        details.update(merged_answers=answers, verifier=verifier.spec if verifier else None)
        if verifier is not None:
            verdicts = await run.gather(*(run.verify(verifier, question, list(m), label=f"verify{i}") for i, m in enumerate(merged)))
            scores = [v.score("min") if isinstance(v, Verdict) and m else 0.0 for v, m in zip(verdicts, merged)]
            chosen = max(range(len(merged)), key=lambda i: (scores[i], answers[i] is not None, -i))
            details.update(scores=[round(s, 6) for s in scores], chosen=chosen, score=round(scores[chosen], 6))
            return Answer(answer=answers[chosen], text="\n".join(merged[chosen]), score=scores[chosen], details=details)
        votes = Counter(a for a in answers if a is not None)
        chosen = answers.index(votes.most_common(1)[0][0]) if votes else 0
        details.update(chosen=chosen, votes=dict(votes))
        return Answer(answer=answers[chosen], text="\n".join(merged[chosen]), details=details)
