"""Best-of-N with a verifier (the baseline of test-time-compute libraries: Hugging Face's
search-and-learn, its_hub; Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems").

Draw N solutions from an inner strategy (one request with n=N, as in self-consistency), score each
with the verifier — per step, reduced to one number by `aggregate` (min, product or last) — and
answer with the best-scored solution. Ties go to the answer more of the tied solutions reach, then
to the first drawn.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from pydantic import Field

from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.verifiers import Aggregation, Verdict, VerifierSpec, open_verifier
from reasoner.strategies.common import inner_strategy, strategy_name
from reasoner.strategies.stepwise import aggregate_field, judged, succeeded, verifier_field


class BestOfN(Strategy):
    name = "best-of-n"
    summary = "N sampled solutions; a verifier scores each (steps aggregated by min/product/last) and picks the best."

    samples: int = Field(8, ge=1, le=128, description="number of sampled solutions N")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    inner: Annotated[str, strategy_name(excluding="best-of-n", what="inner strategy")] = Field(
        "few-shot-cot", description="the strategy sampled N times (any whose result is an answer)"
    )
    verifier: VerifierSpec = verifier_field()
    aggregate: Aggregation = aggregate_field()

    async def forward(self, run: Run, question: str) -> Answer:
        verifier = open_verifier(self.verifier)
        inner = inner_strategy(self, self.inner)
        # The N samples start together: their identical first calls are one request with n=N.
        scored = await run.gather(*(judged(run.scope(f"sample{i}"), inner, question, verifier) for i in range(self.samples)), tolerate=True)
        return choose(succeeded(scored, "sample"), self.aggregate)


def choose(scored: list[tuple[Answer, Verdict]], how: Aggregation) -> Answer:
    scores = [v.score(how) for _, v in scored]
    best = max(scores)
    tied = [i for i, s in enumerate(scores) if s == best]
    counts = Counter(scored[i][0].answer for i in tied if scored[i][0].answer is not None)
    top = counts.most_common(1)[0][0] if counts else None
    chosen = next((i for i in tied if scored[i][0].answer == top), tied[0])
    answer, verdict = scored[chosen]
    return Answer(
        answer=answer.answer,
        text=answer.text,
        score=best,
        details={
            "chosen": chosen,
            "scores": [round(s, 6) for s in scores],
            "answers": [a.answer for a, _ in scored],
            "first_errors": [v.first_error for _, v in scored],
            "verifier": verdict.verifier,
            "aggregate": how,
        },
    )
