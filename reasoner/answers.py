"""Reading final numeric answers out of model output, and scoring them against GSM8K gold.

Two families of rules live here:

* ours (`extract_answer`, `is_correct`): prefers explicit answer markers, understands
  currency, thousands separators, unicode minus, number words after a marker and simple
  fractions after a marker, and compares numbers as `Decimal`s. "No answer" is `None`,
  never a silent 0.
* lm-evaluation-harness (`lm_eval_extract`, `lm_eval_correct`): a faithful copy of the
  filters and exact-match settings of its `gsm8k` task, so our scores can be cross-checked
  against published numbers. These are string rules and are deliberately left as crude as
  the originals.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

__all__ = [
    "ScoringRule",
    "extract_answer",
    "is_correct",
    "lm_eval_correct",
    "lm_eval_extract",
    "normalize_number",
    "parse_gold",
    "score",
]

ScoringRule = Literal["ours", "lm-eval-strict", "lm-eval-flexible"]

_MINUS = "-\u2212"  # ASCII hyphen-minus and the unicode minus sign
_CURRENCY = "$€£"
# A sign may sit on either side of the currency symbol: "-$5" and "$-5" both occur.
_PREFIX = rf"(?P<pre>[{_MINUS}][{_CURRENCY}]?|[{_CURRENCY}][{_MINUS}]?)?"
# Thousands groups must be complete, so "1,2,3" is a list of three numbers, not 123.
_BODY = r"(?P<body>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)?|\.\d+)"
# The look-behind keeps a hyphen after a digit or letter from reading as a sign, so
# "3-4" is a range ending in 4, and stops matches starting inside "v1.2" or "x2".
_NUMBER_RE = re.compile(rf"(?<![\w.]){_PREFIX}{_BODY}")
_WHOLE_NUMBER_RE = re.compile(rf"\s*{_PREFIX}{_BODY}\s*%?\.?\s*")
# Only a fraction glued to its numerator counts: "3 / 4" is more often arithmetic.
_FRACTION_DENOMINATOR_RE = re.compile(r"/(\d+)(?!/)")

# In priority order; within one kind the last occurrence wins.
_MARKERS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\\boxed\s*\{"),
    re.compile(r"####"),
    # Covers "the answer is", "the final answer is", "Final Answer:",
    # "Therefore, the answer (arabic numerals) is" and "answer:".
    re.compile(r"\banswer\s*(?:\(arabic numerals\)\s*)?(?:is\b|:)", re.IGNORECASE),
)

_SMALL_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUES: dict[str, int] = {
    **{word: value for value, word in enumerate(_SMALL_NUMBERS)},
    **{word: 10 * value for value, word in enumerate(_TENS, start=2)},
    "hundred": 100,
    "thousand": 1000,
}
_WORD = "|".join(_WORD_VALUES)
# Right after a marker only: spaces, a colon or markdown bold, then the words. The \b after
# each word keeps "seven" from matching the start of "seventeen" or "seventh".
_NUMBER_WORDS_RE = re.compile(
    rf"[\s:=*]*(?P<words>(?:{_WORD})\b(?:[\s-]+(?:and\s+)?(?:{_WORD})\b)*)", re.IGNORECASE
)

_CALCULATOR_ANNOTATION_RE = re.compile(r"<<.*?>>")
_LATEX_FRACTION_RE = re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}")


def _canonical(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))  # also turns "-0" into "0"
    # format "f" never switches to exponent notation, unlike str() on small values.
    return format(value.normalize(), "f")


def _decimal(pre: str | None, body: str) -> Decimal:
    negative = any(sign in (pre or "") for sign in _MINUS)
    value = Decimal(body.replace(",", ""))
    return -value if negative else value


def normalize_number(s: str) -> str | None:
    """Canonical form of one number string, or None if `s` is not a number.

    Accepts a leading currency symbol, a (unicode) minus, thousands separators, a trailing
    percent sign and a trailing sentence period: "$1,000.50" -> "1000.5", "5.00" -> "5",
    "50%" -> "50", "−3" -> "-3", "-0" -> "0".
    """
    match = _WHOLE_NUMBER_RE.fullmatch(s)
    if match is None:
        return None
    return _canonical(_decimal(match["pre"], match["body"]))


def _number_words_value(words: str) -> int:
    total, current = 0, 0
    for word in re.split(r"[\s-]+", words.lower()):
        if word == "and":
            continue
        value = _WORD_VALUES[word]
        if value == 1000:
            total += max(current, 1) * 1000
            current = 0
        elif value == 100:
            current = max(current, 1) * 100
        else:
            current += value
    return total + current


def _answer_after(text: str, start: int) -> str | None:
    """The answer that a marker ending at `start` points to."""
    # Words count only right after the marker: elsewhere "one" or "ten" is too often prose.
    words = _NUMBER_WORDS_RE.match(text, start)
    if words is not None:
        return str(_number_words_value(words["words"]))

    number = _NUMBER_RE.search(text, start)
    if number is None:
        return None
    value = _decimal(number["pre"], number["body"])
    denominator = _FRACTION_DENOMINATOR_RE.match(text, number.end())
    # A zero denominator is not a fraction we can give a value; keep the numerator.
    if denominator is not None and int(denominator[1]) != 0:
        value /= Decimal(denominator[1])
    return _canonical(value)


def extract_answer(text: str) -> str | None:
    """The final numeric answer in model output, normalised, or None if there is none.

    An explicit marker wins over any other number: `\\boxed{...}`, then `####`, then
    "the answer is" / "answer:" and their variants; the last occurrence of a marker counts
    and the first number after it is the answer. Right after a marker, number words
    ("five", "twenty-five") and fractions ("3/4" -> "0.75") are understood. Without a
    usable marker the last number in the text is the answer, and a fraction there is not
    special ("3/4" gives "4"). GSM8K calculator annotations `<<...>>` are ignored.
    """
    text = _CALCULATOR_ANNOTATION_RE.sub("", text)
    text = _LATEX_FRACTION_RE.sub(r"\1/\2", text).replace("{,}", ",")

    for marker in _MARKERS:
        for occurrence in reversed(list(marker.finditer(text))):
            answer = _answer_after(text, occurrence.end())
            if answer is not None:
                return answer

    numbers = list(_NUMBER_RE.finditer(text))
    if not numbers:
        return None
    last = numbers[-1]
    return _canonical(_decimal(last["pre"], last["body"]))


def parse_gold(answer_field: str | int | float) -> str:
    """The normalised gold number of a GSM8K answer field ("...\\n#### 18" -> "18").

    A bare number (string, int or float) is accepted too. Raises ValueError if there is
    no number to be found.
    """
    if isinstance(answer_field, (int, float)) and not isinstance(answer_field, bool):
        value = Decimal(str(answer_field))
        if not value.is_finite():
            raise ValueError(f"gold answer must be a finite number, got {answer_field!r}")
        return _canonical(value)
    if not isinstance(answer_field, str):
        raise ValueError(f"gold answer must be a string or a number, got {answer_field!r}")

    if "####" in answer_field:
        number = _NUMBER_RE.search(answer_field.rsplit("####", 1)[1])
        if number is not None:
            return _canonical(_decimal(number["pre"], number["body"]))
    else:
        gold = normalize_number(answer_field)
        if gold is not None:
            return gold
    raise ValueError(
        f"no gold number in {answer_field!r}: expected '#### <number>' or a bare number"
    )


_TOLERANCE = Decimal("1e-6")


def is_correct(prediction: str | None, gold: str | None) -> bool:
    """Whether two number strings are the same number (within 1e-6). None never matches."""
    if prediction is None or gold is None:
        return False
    predicted, expected = normalize_number(prediction), normalize_number(gold)
    if predicted is None or expected is None:
        return False
    # Canonical strings are exact decimals, so the difference carries no float error.
    return abs(Decimal(predicted) - Decimal(expected)) <= _TOLERANCE


# --- lm-evaluation-harness `gsm8k` task (gsm8k.yaml, version 3.0) ---------------------

_LM_EVAL_FALLBACK = "[invalid]"
_LM_EVAL_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
_LM_EVAL_FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_LM_EVAL_REGEXES_TO_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")


def lm_eval_extract(text: str, mode: Literal["strict", "flexible"]) -> str:
    """What lm-eval's `strict-match` or `flexible-extract` filter makes of `text`.

    strict: the first `#### <number>`; flexible: the last number-ish token (which may
    keep "$", commas and a trailing period). "[invalid]" when nothing matches.
    """
    if mode == "strict":
        found: list[str] = _LM_EVAL_STRICT_RE.findall(text)
        # group_select defaults to 0 there: the first match.
        return found[0].strip() if found else _LM_EVAL_FALLBACK
    if mode == "flexible":
        tuples: list[tuple[str, str]] = _LM_EVAL_FLEXIBLE_RE.findall(text)
        if not tuples:
            return _LM_EVAL_FALLBACK
        # group_select: -1 picks the last match; exactly one of its two groups is non-empty.
        return next(group for group in tuples[-1] if group).strip()
    raise ValueError(f"unknown lm-eval mode {mode!r}: expected 'strict' or 'flexible'")


def _lm_eval_clean(s: str) -> str:
    for pattern in _LM_EVAL_REGEXES_TO_IGNORE:
        s = re.sub(pattern, "", s)
    return s.lower()  # ignore_case: true; ignore_punctuation is false


def lm_eval_correct(
    text: str, gold_field: str, mode: Literal["strict", "flexible"]
) -> bool:
    """lm-eval's exact_match for GSM8K: filtered prediction vs. the full answer field."""
    prediction = lm_eval_extract(text, mode)
    return _lm_eval_clean(prediction) == _lm_eval_clean(gold_field)


def score(text: str, gold_field: str, rule: ScoringRule = "ours") -> tuple[str | None, bool]:
    """(prediction, correct) for one model output under one scoring rule.

    For the lm-eval rules the prediction is their filtered string, with their
    "[invalid]" fallback reported as None so that "no answer" looks the same under
    every rule.
    """
    if rule == "ours":
        prediction = extract_answer(text)
        return prediction, is_correct(prediction, parse_gold(gold_field))
    if rule == "lm-eval-strict" or rule == "lm-eval-flexible":
        mode: Literal["strict", "flexible"] = "strict" if rule == "lm-eval-strict" else "flexible"
        filtered = lm_eval_extract(text, mode)
        correct = lm_eval_correct(text, gold_field, mode)
        return (None if filtered == _LM_EVAL_FALLBACK else filtered), correct
    raise ValueError(
        f"unknown scoring rule {rule!r}: expected 'ours', 'lm-eval-strict' or 'lm-eval-flexible'"
    )
