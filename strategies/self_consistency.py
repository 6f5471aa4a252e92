"""Self-consistency (Wang et al. 2022, "Self-Consistency Improves Chain of Thought Reasoning in
Language Models"), with adaptive stopping.

Sample k reasoning paths from an inner chain-of-thought strategy at temperature T and answer with
the most frequent final answer (optionally each vote weighted by its sample's mean token
probability). The k copies start with identical model calls, which the engine serves as one
request with n=k, so the prompt is prefilled once.

Adaptive stopping draws the samples in rounds (`window` first, then `step` each) and votes after
each round; the rules (beta, esc, dirichlet) are in reasoner.strategies.stopping.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from reasoner.graph import reason
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.strategies.common import inner_strategy, strategy_name
from reasoner.verifiers import Aggregation, Verifier, VerifierSpec, open_verifier
from reasoner.strategies.stepwise import aggregate_field, judged, verifier_field
from reasoner.strategies.stopping import DEFAULTS, RuleDefaults, StoppingRule, beta_confidence, round_size, should_stop

__all__ = ["SelfConsistency", "beta_confidence", "majority_vote", "should_stop"]

NO_ANSWER = "none"  # the vote-count key of samples without an answer


Weighting = Literal["none", "logprob", "confidence", "verifier"]
# the sample detail each weighting reads (the verifier's score is put there by the vote)
WEIGHT_FIELD = {"logprob": "logprob_mean", "confidence": "trace_confidence", "verifier": "verifier_score"}


def _weight(answer: Answer, weighting: Weighting = "logprob") -> float:
    """exp(the sample's mean token log-probability, or its trace confidence), or its verifier
    score as it is (already in [0, 1]); 1 without one."""
    value = answer.details.get(WEIGHT_FIELD[weighting]) if weighting != "none" else None
    if value is None:
        return 1.0
    return value if weighting == "verifier" else math.exp(value)


def _logprob_sum(answers: Sequence[Answer]) -> float | None:
    """The samples' summed log-probability, or None unless every sample has one."""
    values = [a.details.get("logprob_sum") for a in answers]
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def majority_vote(answers: Sequence[Answer], weighting: Weighting = "none") -> tuple[str | None, dict[str, Any]]:
    """The winning answer of the samples, and how the vote went.

    "No answer" never wins while any sample has an answer. A tie goes to the answer whose samples
    have the larger summed log-probability when all of them carry one, else to the first seen.
    With `weighting="logprob"` a vote counts exp(mean token log-probability), with "confidence"
    exp(trace confidence), with "verifier" the verifier's score (1 for a sample without).
    `details["sample"]` is the index of the sample whose text stands for the winner.
    """
    if not answers:
        raise ValueError("no samples to vote on")
    votes = Counter(a.answer if a.answer is not None else NO_ANSWER for a in answers)
    by_answer: dict[str, list[Answer]] = {}
    for a in answers:
        if a.answer is not None:
            by_answer.setdefault(a.answer, []).append(a)  # dicts keep first-seen order
    weighted = weighting != "none"
    score = {ans: sum(_weight(a, weighting) for a in group) if weighted else len(group) for ans, group in by_answer.items()}
    winner: str | None = None
    if score:
        best = max(score.values())
        tied = [ans for ans, s in score.items() if s == best]
        sums = [_logprob_sum(by_answer[ans]) for ans in tied]
        if len(tied) > 1 and all(s is not None for s in sums):
            tied = [tied[sums.index(max(sums))]]  # type: ignore[type-var]
        winner = tied[0]
    # The winner's text: its most probable sample when all carry log-probabilities, else its first.
    indices = [i for i, a in enumerate(answers) if a.answer == winner] or [0]
    lps = [answers[i].details.get("logprob_sum") for i in indices]
    sample = indices[lps.index(max(lps))] if all(lp is not None for lp in lps) else indices[0]  # type: ignore[type-var]
    details: dict[str, Any] = {
        "votes": dict(votes),
        "agreement": votes[winner] / len(answers) if winner is not None else 0.0,
        "answers": [a.answer for a in answers],
        "sample": sample,
    }
    if weighted:
        details["weights"] = {ans: round(s, 6) for ans, s in score.items()}
    return winner, details


class SelfConsistency(Strategy):
    name = "self-consistency"
    summary = "Sample k chains of thought from an inner strategy and majority-vote their answers (adaptive stopping optional)."

    samples: int = Field(16, ge=1, le=128, description="number of sampled reasoning paths k (the cap when stopping early)")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    inner: Annotated[str, strategy_name()] = Field("few-shot-cot", description="the strategy sampled k times (any whose result is an answer)")
    stopping: StoppingRule = Field(
        "none",
        description="none: draw all k; beta: Adaptive-Consistency; esc: early-stopping self-consistency; "
        "dirichlet: stop once more samples up to k would likely not change the vote",
    )
    window: int | None = Field(None, ge=1, description="samples in the first round when stopping early (one request with n=window; default: the rule's)")
    step: int | None = Field(None, ge=1, description="samples in each later round (default: the rule's, else window)")
    threshold: float | None = Field(None, gt=0.5, le=1.0, description="confidence at which the beta and dirichlet rules stop (default: the rule's)")
    weighting: Weighting = Field(
        "none",
        description="none; logprob: each vote weighs exp(mean token log-probability); confidence: exp(DeepConf trace "
        "confidence, the lowest mean over 32-token groups); verifier: the --verifier's score (steps aggregated by "
        "--aggregate). The dirichlet rule then counts the weighted votes",
    )
    verifier: VerifierSpec = verifier_field()
    aggregate: Aggregation = aggregate_field()

    def rounds(self) -> RuleDefaults:
        """The stopping settings in force: the options set, the rule's defaults for the rest. A
        window set without a step keeps rounds of the window (as before the rules had defaults)."""
        rule = DEFAULTS[self.stopping]
        if self.window is not None:
            rule = rule._replace(window=self.window, step=self.step)
        elif self.step is not None:
            rule = rule._replace(step=self.step)
        return rule if self.threshold is None else rule._replace(threshold=self.threshold)

    def sampler(self, drawn: int) -> Strategy:
        """The inner strategy for one round. All copies in a round share one seed, so their calls
        merge; each round moves the seed past the samples already drawn, so rounds differ."""
        seed = None if self.seed is None else self.seed + drawn
        return inner_strategy(self, self.inner, seed=seed, logprobs=self.logprobs or self.weighting != "none")

    async def forward(self, run: Run, question: str) -> Answer:
        window, step, threshold = self.rounds()
        verifier = open_verifier(self.verifier) if self.weighting == "verifier" else None
        weighting = self.weighting
        results: list[Answer] = []
        drawn = rounds = 0
        while True:
            size = round_size(self.stopping, drawn, self.samples, window, step)
            inner = self.sampler(drawn)
            # One round's samples start together, so their identical first calls are one request with n.
            batch = await run.gather(
                *(self.sample(run.scope(f"sample{i}"), inner, question, verifier) for i in range(drawn, drawn + size)),
                tolerate=True,
            )
            drawn, rounds = drawn + size, rounds + 1
            failures = [r for r in batch if isinstance(r, Exception)]
            results += [r for r in batch if isinstance(r, Answer)]
            # A failed sample (a timeout, a server error) or failed verdict costs one vote, not the question.
            if not results:
                raise RuntimeError(f"all {drawn} samples failed; first: {reason(failures[0])}") from failures[0]
            weights = None if weighting == "none" else [_weight(r, weighting) for r in results]
            answers = [r.answer for r in results]
            if drawn >= self.samples or should_stop(self.stopping, answers, window, threshold, self.samples, weights):
                break
        winner, details = majority_vote(results, weighting)
        details.update(
            samples_drawn=drawn, samples_cap=self.samples, stopping=self.stopping, rounds=rounds, threshold=threshold,
            failed_samples=drawn - len(results),
        )
        return Answer(answer=winner, text=results[details["sample"]].text, score=details["agreement"], details=details)

    async def sample(self, run: Run, inner: Strategy, question: str, verifier: Verifier | None) -> Answer:
        """One sampled answer, with its verifier's score where votes are weighted by it."""
        if verifier is None:
            return await run.solve(inner, question)
        answer, verdict = await judged(run, inner, question, verifier)
        return answer.model_copy(update={"details": {**answer.details, "verifier_score": verdict.score(self.aggregate)}})
