"""Scoring on data that is not GSM8K (issue 16): scientific notation, fractions, the tolerance
rule, numbers too long to be answers, and lm-eval's gsm8k_cot rule."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reasoner.answers import extract_answer, is_correct, lm_eval_correct, lm_eval_extract, parse_gold, score
from reasoner.numbers import MAX_NUMERAL_CHARS, Tolerance, canonical


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 2.0107e-06", "0.0000020107"),
        ("2.0107e-06", "0.0000020107"),  # was 6: the exponent read as the last number
        ("The answer is 3.2E+5 grams", "320000"),
        ("It is 1e3", "1000"),
        ("#### -4.5e2", "-450"),
        ("The answer is 7e\u22122", "0.07"),
        ("He bought 2eggs", "2"),  # an exponent needs its digits
        ("The answer is 1e999999999", None),  # past 10**300 is no answer, not a gigabyte integer
    ],
)
def test_scientific_notation(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_scientific_answer_scores_against_a_gsm_hard_gold() -> None:
    assert score("The answer is 2.0107e-06", "2.0107e-06") == ("0.0000020107", True)
    assert score("The answer is 2.0107", "2.0107e-06")[1] is False


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("3/4", "0.75"),  # a bare fraction rejected the whole file
        ("#### 3/4", "0.75"),  # and this was read as 3
        ("#### -1/8", "-0.125"),
        ("2/3", "2/3"),  # kept exact: no decimal ends
        ("#### 10/4", "2.5"),
        ("9 (apples)", "9"),  # ASDiv writes units after the number
        ("1.5e-3", "0.0015"),
        (2.0107e-06, "0.0000020107"),
    ],
)
def test_fraction_and_other_golds(field: str | float, expected: str) -> None:
    assert parse_gold(field) == expected


def test_fractions_after_a_marker_stay_exact() -> None:
    assert extract_answer("The answer is 2/3") == "2/3"
    assert extract_answer("The answer is 3/45/6") == "3"  # a date or list, not 3/4
    assert is_correct(extract_answer("so the answer is \\frac{2}{3}"), parse_gold("2/3"))


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        # the absolute 1e-6 passed any answer near 0 for a tiny gold
        ("0", "0.0000005158", False),
        ("0.00", "0.0000005158", False),  # rounded to 2 places, but no significant figure left
        ("0.00000052", "0.0000005158", True),  # rounded, two significant figures
        ("0.0000005158", "0.0000005158", True),
        # and 0.67 was wrong for 2/3
        ("0.67", "2/3", True),
        ("0.667", "2/3", True),
        ("0.666666", "2/3", False),  # six places, but not 2/3 rounded (0.666667)
        ("0.666667", "2/3", True),
        ("0.7", "2/3", False),  # one place is too few to count as rounding
        ("0.66", "2/3", False),  # truncated, not rounded
        ("0.67", "0.6666666666666666", True),  # a float gold as GSM-Hard writes it
        ("2/3", "0.6666666666666666", True),  # within the relative tolerance
        ("11.25", "11.25", True),
        ("11.3", "11.25", False),
        ("11.25", "11.254", True),
        ("1234.57", "1234.5678", True),
        ("1235", "1234.5678", False),  # an integer is not a rounded answer
        ("18.004", "18", False),
        ("0.30000000000000004", "0.3", True),  # float noise
        ("5342871", "5342871.5", False),  # relative 9e-8 is a dropped half, not noise
        ("0", "0", True),
        ("0.001", "0", False),
    ],
)
def test_tolerance_rule(prediction: str, gold: str, expected: bool) -> None:
    assert is_correct(prediction, gold) is expected


def test_tolerance_can_be_set() -> None:
    assert is_correct("5342871", "5342871.5", Tolerance(rel=1e-6))
    assert not is_correct("0.67", "2/3", Tolerance(places=None))
    assert not is_correct("0.67", "2/3", Tolerance(places=3))
    assert is_correct("0.7", "2/3", Tolerance(places=1, sig=1))
    assert score("The answer is 0.7", "2/3", tolerance=Tolerance(places=1, sig=1)) == ("0.7", True)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", Tolerance()),
        ("rel=1e-6", Tolerance(rel=1e-6)),
        ("rel=0, places=off", Tolerance(rel=0, places=None)),
        ("places=3,sig=1", Tolerance(places=3, sig=1)),
    ],
)
def test_tolerance_parse(spec: str, expected: Tolerance) -> None:
    assert Tolerance.parse(spec) == expected
    assert Tolerance.parse(str(expected)) == expected


@pytest.mark.parametrize("spec", ["rel", "abs=1", "rel=-1", "rel=x", "places=-2", "sig=0"])
def test_tolerance_parse_rejects(spec: str) -> None:
    with pytest.raises((ValueError, ValidationError)):
        Tolerance.parse(spec)


@pytest.mark.parametrize(
    "text",
    [
        "1" * 5000,  # raised ValueError: Exceeds the limit (4300 digits) for integer string conversion
        "The answer is " + "9" * 5000,
        "#### " + "9" * 4301 + ".5",
        "\\boxed{" + "1" * (MAX_NUMERAL_CHARS + 1) + "}",
        "The answer is 1/" + "7" * 5000,
    ],
)
def test_numbers_too_long_to_be_answers_are_no_answer(text: str) -> None:
    assert extract_answer(text) is None
    assert score(text, "#### 5") == (None, False)


def test_a_long_number_before_the_answer_does_not_matter() -> None:
    assert extract_answer("1" * 5000 + " so the answer is 12") == "12"


def test_overlong_golds_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no gold number"):
        parse_gold("#### " + "9" * 5000)
    with pytest.raises(ValueError, match="finite number"):
        parse_gold(10**5000)


def test_canonical_forms() -> None:
    from fractions import Fraction

    assert canonical(Fraction(-1, 8)) == "-0.125"
    assert canonical(Fraction(1, 3)) == "1/3"
    assert canonical(Fraction(-0)) == "0"
    assert canonical(Fraction(20107, 10**10)) == "0.0000020107"


# --- lm-eval's gsm8k_cot rule ------------------------------------------------------------

GSM8K_GOLD = "Janet sells 9 eggs at $2.\n#### 18"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So 9 * 2 = 18. The answer is 18.", "18"),
        ("The answer is 1,000 dollars.", "1,000"),
        # The task's pattern wants one character after the number, and takes it from the number
        # where nothing follows: lm-eval scores this "1".
        ("The answer is 18", "1"),
        ("the answer is 18.", "[invalid]"),  # and is case-sensitive
        ("The answer is 5. The answer is 6.", "5."),  # take_first; the period goes when scored
        ("#### 18", "[invalid]"),
    ],
)
def test_lm_eval_cot_strict_extract(text: str, expected: str) -> None:
    assert lm_eval_extract(text, "cot-strict") == expected


def test_lm_eval_cot_strict_scores_chain_of_thought_output() -> None:
    cot = "She sells 16 - 3 - 4 = 9 eggs, so she makes 9 * 2 = 18 dollars. The answer is 18."
    assert lm_eval_correct(cot, GSM8K_GOLD, "cot-strict")
    assert score(cot, GSM8K_GOLD, "lm-eval-cot-strict") == ("18", True)
    assert score(cot, GSM8K_GOLD, "lm-eval-strict") == (None, False)  # the gsm8k task's #### rule
    assert score("The answer is 17.", GSM8K_GOLD, "lm-eval-cot-strict") == ("17", False)
