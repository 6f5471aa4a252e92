"""Answer extraction and GSM8K scoring: our rules and the lm-evaluation-harness ones."""

from __future__ import annotations

import pytest

from reasoner.answers import (
    extract_answer,
    is_correct,
    lm_eval_correct,
    lm_eval_extract,
    normalize_number,
    parse_gold,
    score,
)

GSM8K_GOLD = (
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
    "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.\n#### 18"
)

EXTRACTION_CASES: list[tuple[str, str | None]] = [
    # plain numbers, no marker: the last number wins
    ("18", "18"),
    ("42 is what I get", "42"),
    ("First 3, then 7, finally 12", "12"),
    ("She had 5 apples and ate 2, so 3 are left", "3"),
    ("The result is 18.", "18"),
    ("0", "0"),
    # negatives
    ("-5", "-5"),
    ("The temperature fell to -12 degrees", "-12"),
    ("x = -7", "-7"),
    ("The change is (-3) overall", "-3"),
    ("It dropped to \u22125 degrees", "-5"),
    ("The answer is \u221242", "-42"),
    ("The answer is -0", "0"),
    # ranges and subtraction are not negatives
    ("It takes 3-4 hours", "4"),
    ("5 - 3 = 2", "2"),
    ("10-2=8", "8"),
    ("Pages 12-15", "15"),
    # decimals
    ("It costs 3.5 dollars", "3.5"),
    ("He ran .5 miles", "0.5"),
    ("A quarter is 0.25", "0.25"),
    ("The total is 7.00", "7"),
    ("The answer is 2.50.", "2.5"),
    # thousands separators
    ("They raised 1,000 dollars", "1000"),
    ("Population: 12,345,678.9 people", "12345678.9"),
    ("The answer is 1,234,567", "1234567"),
    ("The list is 1,2,3", "3"),
    # currency
    ("It costs $5.50", "5.5"),
    ("The ticket costs \u20ac3", "3"),
    ("He paid \u00a32 for it", "2"),
    ("She lost -$20 on the deal", "-20"),
    ("The balance is $-20", "-20"),
    ("The answer is $1,250.", "1250"),
    # units and percent
    ("They drove 5 km", "5"),
    ("It took 12 hours", "12"),
    ("She has 3 apples", "3"),
    ("The discount is 50%", "50"),
    ("The answer is 12.5%.", "12.5"),
    # words around numbers
    ("She has 12 apples left, so the answer is 12 apples.", "12"),
    ("In total Tom spends 36 minutes walking each day.", "36"),
    # markers beat later numbers
    ("The answer is 18. Check: 9 * 2 = 18, and 3 more is 21", "18"),
    ("#### 72\nThat took me 5 minutes", "72"),
    ("\\boxed{7} since 3 + 4 = 7 and 10 is too many", "7"),
    ("answer: 9, because 3 * 3 = 9 and 4 extra makes 13", "9"),
    # the last occurrence of a marker wins
    ("The answer is 5. Wait, I made an error. The answer is 6.", "6"),
    ("\\boxed{3} ... no, actually \\boxed{4}", "4"),
    ("#### 10\n#### 11", "11"),
    # marker priority: \boxed, then ####, then phrases
    ("The answer is 5. #### 6", "6"),
    ("#### 6\nThe answer is 5", "6"),
    ("The answer is 5, i.e. \\boxed{8}", "8"),
    # marker variants
    ("Therefore, the final answer is 27", "27"),
    ("Therefore, the answer (arabic numerals) is 64.", "64"),
    ("Answer: 15", "15"),
    ("Final Answer: 3.75", "3.75"),
    ("THE ANSWER IS 8", "8"),
    ("**The answer is:** 19", "19"),
    ("The answer is:\n\n23 cookies", "23"),
    ("\\boxed{-3}", "-3"),
    ("\\boxed{\\$1,500}", "1500"),
    ("\\boxed{1{,}500}", "1500"),
    ("####   -4", "-4"),
    # fractions only count after a marker
    ("The answer is 3/4", "0.75"),
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("The answer is -1/4 of the cake", "-0.25"),
    ("She ate 3/4 of the pie", "4"),
    # number words only count right after a marker
    ("The answer is five.", "5"),
    ("The answer is twenty-five.", "25"),
    ("The answer is zero", "0"),
    ("The answer is Twelve", "12"),
    ("The answer is one hundred and five", "105"),
    ("The answer is two thousand three hundred", "2300"),
    ("She has five apples and 3 pears", "3"),
    ("The answer is 12 (twelve)", "12"),
    ("The answer is: ninety", "90"),
    # GSM8K calculator annotations are ignored
    ("He earns 9 * 2 = $<<9*2=18>>18 a day", "18"),
    ("<<5*3=15>>", None),
    # no answer at all
    ("", None),
    ("I don't know.", None),
    ("The answer is unclear", None),
    ("\\boxed{}", None),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACTION_CASES)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_there_are_enough_extraction_cases() -> None:
    assert len(EXTRACTION_CASES) >= 60


def test_marker_without_number_falls_back_to_last_number() -> None:
    assert extract_answer("We have 4 + 4 = 8, so the answer is clear.") == "8"


def test_marker_takes_the_first_number_after_it_even_lines_later() -> None:
    assert extract_answer("The answer is below.\nWe have 4 + 4 = 8") == "4"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5", "5"),
        ("5.00", "5"),
        ("5.50", "5.5"),
        ("1,000", "1000"),
        ("12,345,678.9", "12345678.9"),
        ("$5.50", "5.5"),
        ("\u20ac3", "3"),
        ("50%", "50"),
        ("\u22125", "-5"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("18.", "18"),
        (" 42 ", "42"),
        (".5", "0.5"),
        ("0.1000", "0.1"),
        ("0.0000001", "0.0000001"),
        ("100", "100"),
        ("-$3", "-3"),
        ("3/4", "0.75"),  # fractions are numbers too (issue 16)
        ("2/3", "2/3"),  # kept exact where no decimal ends
        ("2.0107e-06", "0.0000020107"),
        ("1E3", "1000"),
    ],
)
def test_normalize_number(raw: str, expected: str) -> None:
    assert normalize_number(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "abc", "five", "5 km", "1,2", "1.2.3", "NaN", "inf", "--5", "3/0", "3/4/5", "2e", "1 e5"]
)
def test_normalize_number_rejects_non_numbers(raw: str) -> None:
    assert normalize_number(raw) is None


def test_normalize_number_has_no_float_artefacts() -> None:
    assert normalize_number("0.1") == "0.1"
    assert normalize_number("1234567890.123456789") == "1234567890.123456789"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (GSM8K_GOLD, "18"),
        ("Some reasoning\n#### 1,000", "1000"),
        ("#### -5", "-5"),
        ("#### 3.50", "3.5"),
        ("42", "42"),
        (" 7.0 ", "7"),
        (18, "18"),
        (2.5, "2.5"),
        (3.0, "3"),
    ],
)
def test_parse_gold(field: str | int | float, expected: str) -> None:
    assert parse_gold(field) == expected


@pytest.mark.parametrize(
    "field", ["Janet sells eggs.", "", "#### ", "#### none", "18 apples", float("nan")]
)
def test_parse_gold_raises_without_a_number(field: str | float) -> None:
    with pytest.raises(ValueError, match="gold"):
        parse_gold(field)


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("5", "5", True),
        ("5", "5.0", True),
        ("5.0", "5", True),
        ("1,000", "1000", True),
        ("$18", "18", True),
        # One decimal place is too few to be a rounded answer, and 1e-6 is no float noise
        # (tests/core/test_answers_scoring.py has the rule).
        ("0.1", "0.1000001", False),
        ("0.1", "0.100002", False),
        ("0.3", "0.30000000000000004", True),
        ("-5", "5", False),
        ("18", "19", False),
        (None, "5", False),
        (None, "0", False),
        ("5", None, False),
        ("five", "5", False),
    ],
)
def test_is_correct(prediction: str | None, gold: str | None, expected: bool) -> None:
    assert is_correct(prediction, gold) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So she makes 18 dollars.\n#### 18", "18"),
        ("#### 1,000.", "1,000."),
        ("#### -3", "-3"),
        ("#### 5\n#### 6", "5"),  # strict takes the first match
        ("The answer is 18.", "[invalid]"),  # strict needs ####
        ("####18", "[invalid]"),  # and exactly one space after it
    ],
)
def test_lm_eval_strict_extract(text: str, expected: str) -> None:
    assert lm_eval_extract(text, "strict") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 18.", "18."),
        ("She pays $18.", "$18."),
        ("From 3 to 5 to 1,000 dollars", "1,000"),
        ("#### 18\nThat took 7 minutes", "7"),  # flexible ignores markers
        ("It is -4", "-4"),
        ("Range 3-4", "-4"),  # a hyphen right before a digit reads as a sign
        ("Total: 7", "7"),
        ("No numbers here", "[invalid]"),
    ],
)
def test_lm_eval_flexible_extract(text: str, expected: str) -> None:
    assert lm_eval_extract(text, "flexible") == expected


def test_lm_eval_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="mode"):
        lm_eval_extract("18", "loose")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        ("She pays $18.", "flexible", True),  # "$" and the final "." are ignored
        ("Half of 36 is 18", "flexible", True),
        ("She makes 1,8.", "flexible", True),  # commas are simply deleted
        ("The answer is 18.0", "flexible", False),  # string equality, not numeric
        ("She makes 18 dollars.\n#### 18", "strict", True),
        ("She makes 18 dollars.", "strict", False),
        ("#### 17", "strict", False),
    ],
)
def test_lm_eval_correct(text: str, mode: str, expected: bool) -> None:
    assert lm_eval_correct(text, GSM8K_GOLD, mode) is expected  # type: ignore[arg-type]


def test_ours_and_lm_eval_flexible_disagree() -> None:
    text = "The answer is 18. To check: 9 ducks lay 2 eggs each."
    assert score(text, GSM8K_GOLD, "ours") == ("18", True)
    assert score(text, GSM8K_GOLD, "lm-eval-flexible") == ("2", False)


def test_ours_is_numeric_where_lm_eval_is_textual() -> None:
    assert score("#### 18.00", GSM8K_GOLD, "ours") == ("18", True)
    assert score("#### 18.00", GSM8K_GOLD, "lm-eval-strict") == ("18.00", False)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("ours", ("18", True)),
        ("lm-eval-strict", ("18", True)),
        ("lm-eval-flexible", ("18", True)),
    ],
)
def test_score_rules_agree_on_a_clean_answer(rule: str, expected: tuple[str, bool]) -> None:
    assert score("9 * 2 = 18\n#### 18", GSM8K_GOLD, rule) == expected  # type: ignore[arg-type]


def test_score_reports_no_answer_as_none() -> None:
    assert score("I am not sure.", GSM8K_GOLD, "ours") == (None, False)
    assert score("I am not sure.", GSM8K_GOLD, "lm-eval-strict") == (None, False)
    assert score("I am not sure.", GSM8K_GOLD, "lm-eval-flexible") == (None, False)


def test_score_default_rule_is_ours() -> None:
    assert score("The answer is eighteen", GSM8K_GOLD) == ("18", True)


def test_score_unknown_rule_is_an_error() -> None:
    with pytest.raises(ValueError, match="scoring rule"):
        score("18", GSM8K_GOLD, "exact")  # type: ignore[arg-type]


def test_score_bad_gold_is_an_error() -> None:
    with pytest.raises(ValueError):
        score("18", "no number here", "ours")
