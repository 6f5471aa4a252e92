"""When self-consistency has drawn enough samples: the adaptive stopping rules and their rounds.

* beta: Adaptive-Consistency (Aggarwal et al. 2023, "Let's Sample Step by Step"), top two answers.
  With counts v1 >= v2, stop once P(p1 > p2) under Beta(v1+1, v2+1) reaches the threshold.
* esc: Early-Stopping Self-Consistency (Li et al. 2024, "Escape Sky-high Cost"). Stop after a
  window whose answers all agree.
* dirichlet: over all answers, and aware of the budget. The answer shares get a Dirichlet
  posterior (counts + 1 for every answer seen, plus 1 for "an answer not seen yet"); stop once the
  probability that the leader is still strictly ahead after the rest of the cap is drawn reaches
  the threshold. Voting at the cap is what stopping early approximates, so this asks the question
  that matters: would more samples change the vote? Near the cap little can change, so a question
  whose answers are spread over several values (a hard one) is not sampled to the cap in the hope
  that they sort themselves out, which is where the top-two rules spend most of their samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Literal, NamedTuple

StoppingRule = Literal["none", "beta", "esc", "dirichlet"]
PRIOR = 1.0  # Dirichlet pseudo-count of every answer seen, and of the one not seen yet


class RuleDefaults(NamedTuple):
    window: int  # samples in the first round
    step: int | None  # samples in each later round (None: window)
    threshold: float


#: What each rule uses where self-consistency's options leave them unset. dirichlet's are one
#: setting for every cap. On the simulated benchmark (1,319 questions, seeds 0-2) it saves 56-58%
#: of SC@16's samples and 74-75% of SC@40's at -0.45..+0.08 points: the 60% target is met at cap
#: 40, not at 16. 0.80 saves 63% at 16 but loses up to 1.4 points there; 0.95 loses nothing but
#: saves 46% at 16 (README). Counting votes weighted by trace confidence (self-consistency's
#: weighting="confidence") at 0.80 meets it at both: 73% / 87% saved at +0.9..+1.7 points against
#: plain SC@cap (seeds 0-2), though 3-4 points below confidence-weighted SC@cap.
DEFAULTS: dict[StoppingRule, RuleDefaults] = {
    "none": RuleDefaults(4, None, 0.95),
    "beta": RuleDefaults(4, None, 0.95),
    "esc": RuleDefaults(4, None, 0.95),
    "dirichlet": RuleDefaults(3, 1, 0.85),
}


def beta_confidence(v1: int, v2: int) -> float:
    """P(p1 > p2) for p1 ~ Beta(v1+1, v2+1): the posterior probability that the answer with v1
    votes, not the one with v2, is the majority (uniform prior over the two).

    That is 1 - I_0.5(a, b) with a = v1+1, b = v2+1, and for integer a, b the regularized
    incomplete beta function is a binomial tail: I_0.5(a, b) = sum_{j=a}^{a+b-1} C(a+b-1, j) / 2^(a+b-1).
    """
    n = v1 + v2 + 1
    tail = sum(math.comb(n, j) for j in range(v1 + 1, n + 1))
    return float(1 - Fraction(tail, 2**n))


def _log_beta_binomial(k: int, n: int, a: float, b: float) -> float:
    """log P(k successes in n draws) when the success probability is Beta(a, b): a Pólya urn."""
    return (
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + math.lgamma(k + a) + math.lgamma(n - k + b) - math.lgamma(n + a + b)
        + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    )


@lru_cache(maxsize=65536)
def leader_holds(counts: tuple[float, ...], remaining: int) -> float:
    """P(the answer with `counts[0]` votes is strictly ahead of every other once `remaining` more
    samples are drawn), the shares being Dirichlet(counts + PRIOR, PRIOR for an unseen answer).

    Exact: a Dirichlet-multinomial splits one answer at a time, each answer's share of the draws
    left being beta-binomial. Unseen answers count as one (pessimistic: they might split). A tie
    counts as the leader losing, since the tie-break is not the count's to decide.
    """
    if remaining < 0 or not counts or any(c < 0 for c in counts):
        raise ValueError(f"leader_holds needs counts >= 0 and remaining >= 0, got {counts}, {remaining}")
    leader, rivals = counts[0], (*counts[1:], 0)  # the last rival is "not seen yet"
    if leader > max(rivals) + remaining:
        return 1.0  # no draw can catch it up
    weights = [c + PRIOR for c in rivals]

    @lru_cache(maxsize=None)
    def below(j: int, left: int, bound: float) -> float:
        # P(rivals j.. all end below `bound`, given that they share `left` of the draws).
        if j == len(rivals) - 1:
            return 1.0 if rivals[j] + left < bound else 0.0
        rest = sum(weights[j + 1 :])
        total = 0.0
        # the most draws y with rivals[j] + y < bound (for whole counts: bound - 1 - rivals[j])
        for y in range(min(left, math.ceil(bound - rivals[j]) - 1) + 1):
            total += math.exp(_log_beta_binomial(y, left, weights[j], rest)) * below(j + 1, left - y, bound)
        return total

    others = sum(weights)
    return min(1.0, sum(
        math.exp(_log_beta_binomial(x, remaining, leader + PRIOR, others)) * below(0, remaining - x, leader + x)
        for x in range(remaining + 1)
    ))


def should_stop(
    rule: StoppingRule,
    answers: Sequence[str | None],
    window: int,
    threshold: float,
    cap: int | None = None,
    weights: Sequence[float] | None = None,
) -> bool:
    """Whether the samples drawn so far (their answers, in order) are enough under `rule`.
    Samples without an answer are no rival to any answer; `cap` is the most samples `dirichlet`
    may still draw up to (without one it judges the leader against as many again).

    `weights` (one per sample, >= 0) make `dirichlet` count weighted votes, scaled so that the
    samples with an answer weigh one each on average: the counts keep the scale of the samples
    still to come, which count one each. beta and esc count plain votes."""
    counts: list[float] = [count for _, count in Counter(a for a in answers if a is not None).most_common()]
    if rule == "dirichlet" and weights is not None:
        counts = weighted_counts(answers, weights)
    if rule == "beta":
        top = counts + [0, 0]
        return beta_confidence(top[0], top[1]) >= threshold
    if rule == "esc":
        last = answers[-window:]
        return len(last) == window and last[0] is not None and all(a == last[0] for a in last)
    if rule == "dirichlet":
        remaining = (cap if cap is not None else 2 * len(answers)) - len(answers)
        return bool(counts) and leader_holds(tuple(counts), max(0, remaining)) >= threshold
    return False


def weighted_counts(answers: Sequence[str | None], weights: Sequence[float]) -> list[float]:
    """Each answer's summed weight, largest first, scaled to a mean of one per answered sample."""
    if len(weights) != len(answers):
        raise ValueError(f"weighted stopping needs one weight per sample: {len(answers)} answers, {len(weights)} weights")
    if any(not w >= 0 or math.isinf(w) for w in weights):
        raise ValueError(f"vote weights must be finite and >= 0, got {list(weights)}")
    sums: dict[str, float] = {}
    for answer, w in zip(answers, weights):
        if answer is not None:
            sums[answer] = sums.get(answer, 0.0) + w
    if not sum(sums.values()):
        return []  # nothing weighs anything (a verifier rejected every sample): no vote yet
    scale = sum(1 for a in answers if a is not None) / sum(sums.values())
    # rounded so that equal vote situations share leader_holds' cache
    return sorted((round(s * scale, 6) for s in sums.values()), reverse=True)


def round_size(rule: StoppingRule, drawn: int, cap: int, window: int, step: int | None) -> int:
    """How many samples the next round draws: all of them without a rule, else `window` in the
    first round and `step` (default `window`) in every later one, never past the cap."""
    if rule == "none":
        return cap - drawn
    size = window if drawn == 0 or step is None else step
    return min(size, cap - drawn)
