"""DIVERSE (Li et al. 2022, "Making Large Language Models Better Reasoners with Step-Aware
Verifier").

Three parts, as in the paper: diverse prompts — M few-shot prompts, each with its own k exemplars
drawn at random from the GSM8K train split; S sampled reasoning paths per prompt (one request
with n=S each); and a verifier that scores every path, whose scores weight a vote: an answer's
score is the sum of its paths' scores (`vote="weighted"`). The paper's verifier is a trained,
step-aware DeBERTa; here any verifier spec serves (its step scores reduced by `aggregate`).
`vote="majority"` counts paths instead, for comparison at the same samples.
"""

from __future__ import annotations

import random
from collections import defaultdict
from functools import cache
from typing import Literal

from pydantic import Field

from reasoner.data import load_gsm8k
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer, Completion
from reasoner.verifiers import Aggregation, Verdict, Verifier, VerifierSpec, open_verifier, split_steps
from reasoner.strategies.common import Exemplar, answer_from, gsm8k_exemplars, gsm8k_solution, templates
from reasoner.strategies.stepwise import aggregate_field, succeeded, verifier_field

Path = tuple[Answer, Verdict]  # a sampled reasoning path and the verifier's verdict on it


@cache
def train_pool(data: str | None = None) -> tuple[Exemplar, ...]:
    """GSM8K's train split as exemplars ($REASONER_GSM8K, else the download cache)."""
    out = []
    for problem in load_gsm8k("train", data):
        solution, answer = gsm8k_solution(problem.answer_field)
        out.append(Exemplar(question=problem.question, solution=solution, answer=answer))
    return tuple(out)


class Diverse(Strategy):
    name = "diverse"
    summary = "M prompts with different train exemplars x S samples each; votes weighted by a verifier's scores."

    prompts: int = Field(5, ge=1, le=64, description="number of distinct few-shot prompts M")
    samples: int = Field(4, ge=1, le=128, description="sampled reasoning paths per prompt S")
    k: int = Field(5, ge=0, le=16, description="exemplars per prompt")
    pool: Literal["train", "shipped"] = Field(
        "train", description="where exemplars are drawn from: the GSM8K train split, or the 8 shipped ones"
    )
    vote: Literal["weighted", "majority"] = Field("weighted", description="weighted: sum of verifier scores; majority: count")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    verifier: VerifierSpec = verifier_field()
    aggregate: Aggregation = aggregate_field()

    def exemplars(self, m: int) -> list[Exemplar]:
        pool = list(train_pool() if self.pool == "train" else gsm8k_exemplars())
        if self.k > len(pool):
            raise ValueError(f"diverse: k={self.k} exemplars asked for, the {self.pool} pool has {len(pool)}")
        return random.Random(f"diverse-prompt-{m}").sample(pool, self.k)

    async def forward(self, run: Run, question: str) -> Answer:
        verifier = open_verifier(self.verifier)
        prompts = [templates.render("few_shot_cot.j2", exemplars=self.exemplars(m), question=question) for m in range(self.prompts)]
        # The M prompts start together; a failed one costs its S paths, not the question.
        prompted = await run.gather(*(self.paths(run, verifier, question, m, p) for m, p in enumerate(prompts)), tolerate=True)
        results = [path for p in prompted for path in (p if isinstance(p, list) else [p] * self.samples)]
        done: list[Path] = succeeded(results, "path")
        totals: dict[str, float] = defaultdict(float)
        for answer, verdict in done:
            if answer.answer is not None:
                totals[answer.answer] += verdict.score(self.aggregate) if self.vote == "weighted" else 1.0
        winner = max(totals, key=lambda a: totals[a]) if totals else None  # ties: the first seen
        best = max(
            (i for i, (a, _) in enumerate(done) if a.answer == winner),
            key=lambda i: done[i][1].score(self.aggregate),
            default=0,
        )
        return Answer(
            answer=winner,
            text=done[best][0].text,
            score=totals.get(winner, 0.0) / len(done) if winner else 0.0,
            details={
                "vote": self.vote,
                "totals": {a: round(t, 6) for a, t in totals.items()},
                "answers": [a.answer for a, _ in done],
                "scores": [round(v.score(self.aggregate), 6) for _, v in done],
                "paths": len(done),
                "failed_paths": len(results) - len(done),
            },
        )

    async def paths(self, run: Run, verifier: Verifier, question: str, m: int, prompt: str) -> list[Path | Exception]:
        """Prompt m's S sampled paths (one request with n=S), each with its verdict."""
        # Each prompt samples with seeds of its own, so its paths differ from the other prompts'.
        seed = None if self.seed is None else self.seed + m * self.samples
        reply = await run.generate(self.request(prompt, n=self.samples, stop=("\nQ:", "\n\n\n"), seed=seed), label=f"prompt{m}")
        answers = [answer_from(_choice(reply, s)) for s in range(self.samples)]
        verdicts = await run.gather(
            *(run.scope(f"prompt{m}/path{s}").verify(verifier, question, split_steps(a.text)) for s, a in enumerate(answers)),
            tolerate=True,
        )
        return [v if isinstance(v, Exception) else (a, v) for a, v in zip(answers, verdicts)]


def _choice(completion: Completion, index: int) -> Completion:
    """One sampled path of a request as a completion of its own, for parsing."""
    return completion.model_copy(update={"choices": [completion.choices[index]]})
