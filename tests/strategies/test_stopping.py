"""The budget-aware Dirichlet stopping rule against vote sequences worked out by hand, and the
rounds it draws in self-consistency."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from reasoner.strategies.self_consistency import SelfConsistency
from reasoner.strategies.stopping import leader_holds, round_size, should_stop, weighted_counts
from reasoner.strategy import get_strategy
from reasoner.testing.scripted import Rule, ScriptedBackend

QUESTION = "How many apples does Tom have?"


def says(*numbers: int) -> list[str]:
    return [f"Tom has some.\nThe answer is {n}." for n in numbers]


def sc(**options: Any) -> SelfConsistency:
    strategy = get_strategy("self-consistency", **options)
    assert isinstance(strategy, SelfConsistency)
    return strategy


# The urn behind the rule: every answer seen weighs its count + 1, an unseen answer weighs 1, and a
# draw adds 1 to the answer drawn. A tie is the leader losing.


def test_one_vote_and_one_draw_left() -> None:
    # Weights 2 (leader) : 1 (unseen). The leader holds only if it is drawn (2 vs 0); an unseen
    # answer ties it 1 to 1.
    assert leader_holds((1,), 1) == pytest.approx(2 / 3, abs=1e-12)


def test_two_to_one_and_one_draw_left() -> None:
    # Weights 3 : 2 : 1 of 6. Leader drawn: 3-1 holds; rival drawn: 2-2 tie; unseen: 2-1-1 holds.
    assert leader_holds((2, 1), 1) == pytest.approx(4 / 6, abs=1e-12)


def test_three_to_one_and_two_draws_left() -> None:
    # Weights 4 : 2 : 1 of 7. Only the rival drawn twice (2/7 * 3/8) catches the leader up (3-3).
    assert leader_holds((3, 1), 2) == pytest.approx(float(1 - Fraction(2, 7) * Fraction(3, 8)), abs=1e-12)


def test_a_lead_larger_than_the_draws_left_is_certain() -> None:
    assert leader_holds((5, 1), 3) == 1.0
    assert leader_holds((1,), 0) == 1.0
    assert leader_holds((2, 2), 0) == 0.0  # a tie at the cap


def test_more_draws_left_make_the_leader_less_safe() -> None:
    assert leader_holds((3,), 1) > leader_holds((3,), 5) > leader_holds((3,), 13) > leader_holds((3,), 37)


def test_bad_counts_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="counts >= 0"):
        leader_holds((2, -1), 3)
    with pytest.raises(ValueError, match="remaining >= 0"):
        leader_holds((2,), -1)


def test_dirichlet_vote_sequences() -> None:
    # Three agreeing votes with 13 of 16 left: 0.947 (a Monte Carlo check gives the same).
    assert leader_holds((3,), 13) == pytest.approx(0.947, abs=1e-3)
    assert should_stop("dirichlet", ["7", "7", "7"], 3, 0.85, cap=16)
    assert not should_stop("dirichlet", ["7", "7", "7"], 3, 0.95, cap=16)
    assert not should_stop("dirichlet", ["7", "7", "8"], 3, 0.85, cap=16)
    # Samples without an answer are no rival: 3 votes for 7 and 2 blanks is still 3 to nothing.
    assert should_stop("dirichlet", ["7", None, "7", None, "7"], 3, 0.85, cap=16) == (leader_holds((3,), 11) >= 0.85)
    assert not should_stop("dirichlet", [None, None, None], 3, 0.5, cap=16)
    # Near the cap a spread vote is settled: 7 to 5 with one sample left cannot be overturned.
    assert should_stop("dirichlet", ["7"] * 7 + ["8"] * 5 + ["9"] * 3, 3, 0.99, cap=16)
    # 3 to 2 with one draw left: weights 4 : 3 : 1 of 8, and only the rival drawn ties (3-3).
    split = ["7", "8", "7", "8", "7"]
    assert leader_holds((3, 2), 1) == pytest.approx(5 / 8, abs=1e-12)
    assert should_stop("dirichlet", split, 3, 0.6, cap=6)
    assert not should_stop("dirichlet", split, 3, 0.85, cap=15)  # 10 left: 0.66


# Weighted votes: each answer's summed weight, scaled so that answered samples weigh one on average
# (the samples still to come count one each).


def test_weighted_counts_are_scaled_to_one_per_answered_sample() -> None:
    # 7: 1 + 1, 8: 0.25 of 2.25 over 3 answered samples: x 4/3. A blank is no vote and no weight.
    assert weighted_counts(["7", "7", "8", None], [1, 1, 0.25, 9]) == pytest.approx([8 / 3, 1 / 3])
    assert weighted_counts([None], [1.0]) == []
    with pytest.raises(ValueError, match="one weight per sample: 2 answers, 1 weights"):
        weighted_counts(["7", "8"], [1.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        weighted_counts(["7", "8"], [1.0, -0.5])
    assert weighted_counts(["7", "8"], [0.0, 0.0]) == []  # all rejected: no vote to stop on


def test_weighted_leader_with_a_fractional_lead() -> None:
    # 7 weighs 3, 8 weighs 1 of 2 samples: counts 1.5 and 0.5. Urn weights 2.5 : 1.5 : 1 (unseen)
    # of 5, one draw left. Leader drawn: holds; rival drawn: 1.5 to 1.5, a tie; unseen: 1.5 to 1.
    assert leader_holds((1.5, 0.5), 1) == pytest.approx(3.5 / 5, abs=1e-12)
    assert should_stop("dirichlet", ["7", "8"], 3, 0.65, cap=3, weights=[3.0, 1.0])
    assert not should_stop("dirichlet", ["7", "8"], 3, 0.75, cap=3, weights=[3.0, 1.0])
    assert not should_stop("dirichlet", ["7", "8"], 3, 0.65, cap=3)  # plain: 1 to 1


def test_weighted_vote_sequences() -> None:
    # 7, 7, 8 with 8 weighing a quarter: 8/3 to 1/3, and with one draw left no draw catches 7 up;
    # plain it is 2 to 1, which holds 4/6 (weights 3 : 2 : 1; the rival drawn ties).
    sequence, weights = ["7", "7", "8"], [1.0, 1.0, 0.25]
    assert should_stop("dirichlet", sequence, 3, 0.99, cap=4, weights=weights)
    assert not should_stop("dirichlet", sequence, 3, 0.7, cap=4)
    # A weight can hand the lead over: 8 weighing 4 leads 2 to 1 (scaled: 8 is 4 of 6 over 3).
    assert weighted_counts(sequence, [1.0, 1.0, 4.0]) == pytest.approx([2.0, 1.0])
    assert should_stop("dirichlet", sequence, 3, 0.6, cap=4, weights=[1.0, 1.0, 4.0]) == (leader_holds((2, 1), 1) >= 0.6)
    # Equal weights are the plain vote, whatever their size.
    for cap in (4, 8, 16):
        assert should_stop("dirichlet", sequence, 3, 0.6, cap=cap, weights=[0.3] * 3) == should_stop(
            "dirichlet", sequence, 3, 0.6, cap=cap
        )
    # beta and esc count plain votes.
    assert should_stop("beta", ["7"] * 4, 4, 0.95, weights=[0.01, 1, 1, 1]) == should_stop("beta", ["7"] * 4, 4, 0.95)


async def test_confidence_weighted_dirichlet_stops_when_the_odd_sample_is_unsure() -> None:
    # 3, 3, 5: the 5 sample (7 tokens) has token log-probabilities of -5 (trace confidence -5), the others -0.1.
    # Weighted: 2.99 to 0.01 with 13 of 16 left holds 0.92; plain 2 to 1 holds 0.64.
    def backend() -> ScriptedBackend:
        return ScriptedBackend([Rule("Tom", says(3, 3, 5, 3, 3, 3, 3), logprob=[-0.7, -0.7, -35.0, -0.7])])

    weighted = await sc(stopping="dirichlet", threshold=0.85, weighting="confidence").solve(QUESTION, backend())
    assert weighted.details["samples_drawn"] == 3 and weighted.answer == "3"
    plain = await sc(stopping="dirichlet", threshold=0.85).solve(QUESTION, backend())
    assert plain.details["samples_drawn"] > 3


def test_round_sizes() -> None:
    assert round_size("none", 0, 16, 3, 1) == 16
    assert [round_size("dirichlet", d, 16, 3, 1) for d in (0, 3, 4)] == [3, 1, 1]
    assert round_size("dirichlet", 4, 16, 3, None) == 3  # later rounds default to the window
    assert round_size("beta", 14, 16, 4, None) == 2  # never past the cap


async def test_dirichlet_stops_after_a_unanimous_first_round() -> None:
    backend = ScriptedBackend([("Tom", says(4))])
    solution = await sc(stopping="dirichlet", window=3, step=1, threshold=0.85).solve(QUESTION, backend)
    assert [r.n for r in backend.requests] == [3]
    assert solution.details["samples_drawn"] == 3 and solution.answer == "4"


async def test_dirichlet_draws_one_at_a_time_until_the_vote_is_settled() -> None:
    # 3, 3, 5 | 3 | 3: after 4 votes (3 to 1, 12 left) 0.81 < 0.85; after 5 (4 to 1, 11 left) 0.92.
    backend = ScriptedBackend([("Tom", says(3, 3, 5, 3, 3, 9, 9, 9))])
    strategy = sc(stopping="dirichlet", window=3, step=1, threshold=0.85, seed=10)
    assert leader_holds((3, 1), 12) < 0.85 <= leader_holds((4, 1), 11)
    solution = await strategy.solve(QUESTION, backend)
    assert [(r.n, r.seed) for r in backend.requests] == [(3, 10), (1, 13), (1, 14)]
    d = solution.details
    assert d["samples_drawn"] == 5 and d["rounds"] == 3 and d["votes"] == {"3": 4, "5": 1}


def test_each_rule_has_its_own_defaults_and_set_options_win() -> None:
    assert sc(stopping="dirichlet").rounds() == (3, 1, 0.85)
    assert sc(stopping="beta").rounds() == (4, None, 0.95)
    assert sc(stopping="esc").rounds() == (4, None, 0.95)
    assert sc(stopping="dirichlet", threshold=0.9).rounds() == (3, 1, 0.9)
    assert sc(stopping="dirichlet", window=5).rounds() == (5, None, 0.85)  # rounds of the window set
    assert sc(stopping="dirichlet", step=2).rounds() == (3, 2, 0.85)


async def test_dirichlet_by_name_alone_draws_three_then_one_at_a_time() -> None:
    # The defaults (3 then 1 at 0.85) with no other option: 6, 8, 6 | 6 | 6 — after 4 votes
    # (3 to 1, 12 left) 0.817 < 0.85 goes on, after 5 (4 to 1, 11 left) 0.916 stops.
    backend = ScriptedBackend([("Tom", says(6, 8, 6, 6, 6, 1, 1, 1))])
    solution = await sc(stopping="dirichlet", seed=0).solve(QUESTION, backend)
    assert [r.n for r in backend.requests] == [3, 1, 1]
    assert solution.answer == "6" and solution.details["samples_drawn"] == 5
    assert solution.details["threshold"] == 0.85
