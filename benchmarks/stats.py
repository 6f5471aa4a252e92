"""The statistics of a run's report: binomial intervals and the paired test between strategies."""

from __future__ import annotations

import math
from fractions import Fraction

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default); (0, 1) when n is 0.

    The bounds are exact at the edges (0 right: lower bound 0; all right: upper bound 1) and
    always hold the observed proportion, which float rounding alone does not guarantee
    (0 of 3 gives 5.6e-17, 10 of 10 gives 0.9999999999999999), so an error bar drawn from
    them is never negative.
    """
    if n == 0:
        return 0.0, 1.0
    if not 0 <= correct <= n:
        raise ValueError(f"wilson_interval: {correct} correct out of {n} is not a proportion")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if correct == 0 else min(p, max(0.0, centre - half))
    high = 1.0 if correct == n else max(p, min(1.0, centre + half))
    return low, high


def error_bar(accuracy: float, interval: tuple[float, float] | list[float]) -> tuple[float, float]:
    """(below, above) the accuracy to draw an interval, never negative whatever the rounding."""
    low, high = interval
    return max(0.0, accuracy - low), max(0.0, high - accuracy)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of b successes in b + c fair coin flips.

    b and c are the discordant pairs (A right and B wrong, and the reverse). Exact rational
    arithmetic, because 0.5**n underflows a float long before GSM8K's 1319 questions.
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def target_cell(saved: float, target: float, delta: float, tolerance: float, *, what: str = "samples") -> str:
    """A table cell (rich markup) saying whether a cost-saving target was met: at least `target` of
    the cost saved with at most `tolerance` points of accuracy lost, and which part missed."""
    misses = [why for why, ok in ((what, saved >= target), ("accuracy", delta >= -tolerance)) if not ok]
    return "[green]met[/green]" if not misses else f"[red]missed ({', '.join(misses)})[/red]"
