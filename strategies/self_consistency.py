"""Self-consistency (Wang et al. 2022, "Self-Consistency Improves Chain of Thought Reasoning in
Language Models"), with adaptive stopping.

Sample k reasoning paths from an inner chain-of-thought strategy at temperature T and answer with
the most frequent final answer (optionally each vote weighted by its sample's mean token
probability). The k copies start with identical model calls, which the engine serves as one
request with n=k, so the prompt is prefilled once.

Adaptive stopping draws the samples in rounds of `window` and votes after each round:
* beta: Adaptive-Consistency (Aggarwal et al. 2023, "Let's Sample Step by Step"). With the top two
  answer counts v1 >= v2, stop once P(p1 > p2) under Beta(v1+1, v2+1) reaches `threshold`;
* esc: Early-Stopping Self-Consistency (Li et al. 2024, "Escape Sky-high Cost"). Stop after a
  window whose answers all agree.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from functools import cache
from typing import Any, Literal

from pydantic import Field, field_validator

from reasoner.graph import Ctx, Forward, Graph, NodeId
from reasoner.strategy import Strategy, available
from reasoner.types import Answer

StoppingRule = Literal["none", "beta", "esc"]
NO_ANSWER = "none"  # the vote-count key of samples without an answer


@cache
def _strategies() -> dict[str, type[Strategy]]:
    # Scanning the installed entry points costs milliseconds; a round is built per vote.
    return available()


def beta_confidence(v1: int, v2: int) -> float:
    """P(p1 > p2) for p1 ~ Beta(v1+1, v2+1): the posterior probability that the answer with v1
    votes, not the one with v2, is the majority (uniform prior over the two).

    That is 1 - I_0.5(a, b) with a = v1+1, b = v2+1, and for integer a, b the regularized
    incomplete beta function is a binomial tail: I_0.5(a, b) = sum_{j=a}^{a+b-1} C(a+b-1, j) / 2^(a+b-1).
    """
    n = v1 + v2 + 1
    tail = sum(math.comb(n, j) for j in range(v1 + 1, n + 1))
    return float(1 - Fraction(tail, 2**n))


def should_stop(rule: StoppingRule, answers: Sequence[str | None], window: int, threshold: float) -> bool:
    """Whether the samples drawn so far (their answers, in order) are enough under `rule`."""
    if rule == "beta":
        top = [count for _, count in Counter(a for a in answers if a is not None).most_common(2)] + [0, 0]
        return beta_confidence(top[0], top[1]) >= threshold
    if rule == "esc":
        last = answers[-window:]
        return len(last) == window and last[0] is not None and all(a == last[0] for a in last)
    return False


def _weight(answer: Answer) -> float:
    mean = answer.details.get("logprob_mean")
    return math.exp(mean) if mean is not None else 1.0


def _logprob_sum(answers: Sequence[Answer]) -> float | None:
    """The samples' summed log-probability, or None unless every sample has one."""
    values = [a.details.get("logprob_sum") for a in answers]
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def majority_vote(answers: Sequence[Answer], weighted: bool = False) -> tuple[str | None, dict[str, Any]]:
    """The winning answer of the samples, and how the vote went.

    "No answer" never wins while any sample has an answer. A tie goes to the answer whose samples
    have the larger summed log-probability when all of them carry one, else to the first seen.
    With `weighted`, a vote counts exp(mean token log-probability) (1 for a sample without).
    `details["sample"]` is the index of the sample whose text stands for the winner.
    """
    if not answers:
        raise ValueError("no samples to vote on")
    votes = Counter(a.answer if a.answer is not None else NO_ANSWER for a in answers)
    by_answer: dict[str, list[Answer]] = {}
    for a in answers:
        if a.answer is not None:
            by_answer.setdefault(a.answer, []).append(a)  # dicts keep first-seen order
    score = {ans: sum(_weight(a) for a in group) if weighted else len(group) for ans, group in by_answer.items()}
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
    inner: str = Field("few-shot-cot", description="the strategy sampled k times (any whose result is an answer)")
    stopping: StoppingRule = Field(
        "none", description="none: draw all k; beta: Adaptive-Consistency; esc: early-stopping self-consistency"
    )
    window: int = Field(4, ge=1, description="samples per round when stopping early (one request with n=window)")
    threshold: float = Field(0.95, gt=0.5, le=1.0, description="confidence at which the beta rule stops")
    weighted: bool = Field(False, description="weight each vote by its sample's mean token probability")

    @field_validator("inner")
    @classmethod
    def _registered(cls, inner: str) -> str:
        known = _strategies()
        if inner not in known:
            raise ValueError(f"unknown strategy {inner!r}; known: {', '.join(sorted(known))}")
        return inner

    def sampler(self, drawn: int) -> Strategy:
        """The inner strategy for one round. All copies in a round share one seed, so their calls
        merge; each round moves the seed past the samples already drawn, so rounds differ."""
        return _strategies()[self.inner](
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=None if self.seed is None else self.seed + drawn,
            logprobs=self.logprobs or self.weighted,
        )

    def build(self, graph: Graph, question: str) -> NodeId:
        round_size = self.samples if self.stopping == "none" else self.window

        def next_round(earlier: list[NodeId]) -> NodeId:
            drawn = len(earlier)
            inner = self.sampler(drawn)
            size = min(round_size, self.samples - drawn)
            # The running graph is the root; `graph` keeps this strategy's scope for later rounds.
            fresh = [inner.build(graph.scope(f"sample{i}"), question) for i in range(drawn, drawn + size)]
            sampled = earlier + fresh
            rounds = math.ceil(len(sampled) / round_size)
            label = "vote" if rounds == 1 else f"vote{rounds}"
            return graph.function(
                lambda ctx: vote(ctx, sampled, rounds), after=sampled, label=label, tolerate_failures=True
            )

        def vote(ctx: Ctx, sampled: list[NodeId], rounds: int) -> Answer | Forward:
            # A failed sample (a timeout, a server error) costs one vote, not the whole question.
            failed = [node for node in sampled if not ctx.ok(node)]
            if len(failed) == len(sampled):
                raise RuntimeError(f"all {len(sampled)} samples failed; first: {ctx.error(failed[0])}")
            results = [ctx[node] for node in sampled if ctx.ok(node)]
            for node, result in zip(sampled, results):
                if not isinstance(result, Answer):
                    raise TypeError(f"inner strategy {self.inner!r} gave {type(result).__name__} at {node!r}, not an Answer")
            answers = [r.answer for r in results]
            if len(sampled) < self.samples and not should_stop(self.stopping, answers, self.window, self.threshold):
                return Forward(next_round(sampled))
            winner, details = majority_vote(results, self.weighted)
            details.update(
                samples_drawn=len(sampled), samples_cap=self.samples, stopping=self.stopping, rounds=rounds,
                failed_samples=len(failed),
            )
            return Answer(answer=winner, text=results[details["sample"]].text, score=details["agreement"], details=details)

        return next_round([])
