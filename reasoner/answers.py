"""Reading final numeric answers out of model output, and scoring them against a gold number.

Two families of rules live here:

* ours (`extract_answer`, `is_correct`): prefers explicit answer markers, understands
  currency, thousands separators, unicode minus, scientific notation, number words after a
  marker and fractions after a marker, and compares numbers exactly (`reasoner.numbers`,
  which also documents the tolerance rule). "No answer" is `None`, never a silent 0.
* lm-evaluation-harness (`lm_eval_extract`, `lm_eval_correct`): faithful copies of the
  filters and exact-match settings of its `gsm8k` task (strict: `#### N`) and `gsm8k_cot`
  task (cot-strict: `The answer is N.`); flexible is the same in both. These are string
  rules and are deliberately left as crude as the originals.

Every parser here runs in time linear in its input, and reads at most the last
`MAX_PARSED_CHARS` characters of model text: a model that runs on for megabytes after its
answer loses that answer, and no output can stall the caller. A cut that falls inside a
word drops that word, so a number is never read from half its digits.
"""

from __future__ import annotations

import re
from typing import Literal

from reasoner.numbers import (
    BODY,
    MAX_NUMERAL_CHARS,
    PREFIX,
    Tolerance,
    canonical,
    fraction_of,
    is_correct,
    normalize_number,
    number_value,
    read_numeral,
)

__all__ = [
    "MAX_PARSED_CHARS",
    "ScoringRule",
    "Tolerance",
    "bounded",
    "extract_answer",
    "is_correct",
    "lm_eval_correct",
    "lm_eval_extract",
    "normalize_number",
    "parse_gold",
    "preview",
    "score",
]

ScoringRule = Literal["ours", "lm-eval-strict", "lm-eval-cot-strict", "lm-eval-flexible"]
LmEvalMode = Literal["strict", "cot-strict", "flexible"]

#: Only this many characters at the end of a model's text are parsed: about 4,000 tokens,
#: sixteen times the default `max_tokens`, and a worst case of a few milliseconds a parse.
MAX_PARSED_CHARS = 16_384

# The look-behind keeps a hyphen after a digit or letter from reading as a sign, so
# "3-4" is a range ending in 4, and stops matches starting inside "v1.2" or "x2".
_NUMBER_RE = re.compile(rf"(?<![\w.]){PREFIX}{BODY}")
# Only a fraction glued to its numerator counts: "3 / 4" is more often arithmetic, and
# "3/4/5" is a date or a list, not a fraction.
_FRACTION_DENOMINATOR_RE = re.compile(r"/(\d+)(?![\d/])")

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
# each word keeps "seven" from matching the start of "seventeen" or "seventh". Twelve words
# say any number a word problem has; the bound keeps "hundred hundred ..." from building a
# number with a million digits.
_NUMBER_WORDS_RE = re.compile(
    rf"[\s:=*]*(?P<words>(?:{_WORD})\b(?:[\s-]+(?:and\s+)?(?:{_WORD})\b){{0,11}})", re.IGNORECASE
)
_LATEX_FRACTION_RE = re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}")
_WHITESPACE_RE = re.compile(r"\s")


def preview(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to about `limit` characters, saying how long it was, for messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def bounded(text: str, limit: int | None = MAX_PARSED_CHARS) -> str:
    """The end of `text` that parsers read: its last `limit` characters, from a word start."""
    if limit is None or len(text) <= limit:
        return text
    tail = text[-limit:]
    space = _WHITESPACE_RE.search(tail)
    return tail[space.end():] if space else ""


def _drop_calculator_annotations(text: str) -> str:
    """`text` without GSM8K's `<<48/2=24>>` annotations: what re.sub("<<.*?>>", "") gives,
    but linear where that regex is quadratic on a line of "<<" that never closes."""
    kept: list[str] = []
    pos = 0
    while (start := text.find("<<", pos)) >= 0:
        end = text.find(">>", start + 2)
        if end < 0:
            break  # nothing closes from here on
        newline = text.rfind("\n", start + 2, end)
        if newline >= 0:
            # No "<<" before that line break closes on its own line: resume after it.
            kept.append(text[pos : newline + 1])
            pos = newline + 1
            continue
        kept.append(text[pos:start])
        pos = end + 2
    kept.append(text[pos:])
    return "".join(kept)


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


def _read(text: str, number: re.Match[str], *, fraction: bool) -> str | None:
    """The canonical value of a matched number, divided by a glued-on denominator if asked."""
    value = read_numeral(number["pre"], number["body"])
    denominator = _FRACTION_DENOMINATOR_RE.match(text, number.end()) if fraction else None
    # A zero denominator is not a fraction we can give a value; keep the numerator.
    if denominator is not None and denominator[1].strip("0"):
        value = fraction_of(value, denominator[1])
    return None if value is None else canonical(value)


def extract_answer(text: str, *, limit: int | None = MAX_PARSED_CHARS) -> str | None:
    """The final numeric answer in model output, normalised, or None if there is none.

    An explicit marker wins over any other number: `\\boxed{...}`, then `####`, then
    "the answer is" / "answer:" and their variants; the last occurrence of a marker counts
    and the first number after it is the answer. Right after a marker, number words
    ("five", "twenty-five") and fractions ("3/4" -> "0.75") are understood. Without a
    usable marker the last number in the text is the answer, and a fraction there is not
    special ("3/4" gives "4"). GSM8K calculator annotations `<<...>>` are ignored. Only
    the last `limit` characters are read (None: all); a numeral too long to be an answer
    (`reasoner.numbers.MAX_NUMERAL_CHARS`) reads as none.
    """
    text = _drop_calculator_annotations(bounded(text, limit))
    text = _LATEX_FRACTION_RE.sub(r"\1/\2", text).replace("{,}", ",")

    for marker in _MARKERS:
        later = len(text)  # where the occurrence after this one starts
        for occurrence in reversed(list(marker.finditer(text))):
            # Words count only right after the marker: elsewhere "one" or "ten" is too often prose.
            words = _NUMBER_WORDS_RE.match(text, occurrence.end())
            if words is not None:
                return str(_number_words_value(words["words"]))
            # Only the gap before the next occurrence needs searching: any number beyond it
            # was that occurrence's, and it gave no answer. This keeps the work linear. No
            # number can run into a marker, so the end of the gap cuts none short.
            number = _NUMBER_RE.search(text, occurrence.end(), later)
            later = occurrence.start()
            if number is not None and (answer := _read(text, number, fraction=True)) is not None:
                return answer
    number = _last_number(text)
    return None if number is None else _read(text, number, fraction=False)


def _last_number(text: str) -> re.Match[str] | None:
    """The last match of the number pattern, reading back from the end a growing chunk at a time
    (a text of numbers has one a few characters from its end). A chunk starts at a space or
    line break, which no number spans, so its matches are the ones a scan from the start finds."""
    end, size = len(text), 256
    while end > 0:
        cut = max(text.rfind(" ", 0, end - size), text.rfind("\n", 0, end - size), 0) if end > size else 0
        last = None
        for last in _NUMBER_RE.finditer(text, cut, end):
            pass
        if last is not None:
            return last
        end, size = cut, size * 2
    return None


def parse_gold(answer_field: str | int | float) -> str:
    """The normalised gold number of an answer field ("...\\n#### 18" -> "18").

    A bare number (string, int or float) is accepted too, as are fractions ("3/4",
    "#### 2/3"), scientific notation and a unit in parentheses after a bare number
    ("9 (apples)", as ASDiv writes answers). Raises ValueError if there is no number.
    """
    if isinstance(answer_field, (int, float)) and not isinstance(answer_field, bool):
        # Bounded before str(): past 4,300 digits that raises, and no gold is that long anyway.
        readable = abs(answer_field) < 10**MAX_NUMERAL_CHARS
        value = number_value(str(answer_field)) if readable else None
        if value is None:
            got = preview(answer_field) if isinstance(answer_field, float) else "a longer integer"
            raise ValueError(f"gold answer must be a finite number of at most {MAX_NUMERAL_CHARS} digits, got {got}")
        return canonical(value)
    if not isinstance(answer_field, str):
        raise ValueError(f"gold answer must be a string or a number, got {type(answer_field).__name__}")

    if "####" in answer_field:
        final = answer_field.rpartition("####")[2]
        number = _NUMBER_RE.search(final)
        if number is not None:
            gold = _read(final, number, fraction=True)
            if gold is not None:
                return gold
    else:
        bare = answer_field.strip()
        if bare.endswith(")") and " (" in bare:
            bare = bare.partition(" (")[0]
        gold = normalize_number(bare)
        if gold is not None:
            return gold
    raise ValueError(
        f"no gold number in {preview(answer_field)}: expected '#### <number>' or a bare number"
    )


# --- lm-evaluation-harness `gsm8k` and `gsm8k_cot` tasks (version 3.0) ------------------

_LM_EVAL_FALLBACK = "[invalid]"
_LM_EVAL_PATTERNS: dict[str, re.Pattern[str]] = {
    "strict": re.compile(r"#### (\-?[0-9\.\,]+)"),
    # The final "." is the task's own: any one character must follow the number.
    "cot-strict": re.compile(r"The answer is (\-?[0-9\.\,]+)."),
    "flexible": re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)"),
}
_LM_EVAL_PERIOD_RE = re.compile(r"\.$")


def lm_eval_extract(text: str, mode: LmEvalMode, *, limit: int | None = MAX_PARSED_CHARS) -> str:
    """What lm-eval's `strict-match` (gsm8k), `strict-match` (gsm8k_cot, "cot-strict") or
    `flexible-extract` filter makes of the last `limit` characters of `text`.

    strict: the first `#### <number>`; cot-strict: the first `The answer is <number>`
    followed by any character; flexible: the last number-ish token (which may keep "$",
    commas and a trailing period). "[invalid]" when nothing matches.
    """
    pattern = _LM_EVAL_PATTERNS.get(mode)
    if pattern is None:
        raise ValueError(f"unknown lm-eval mode {mode!r}: expected 'strict', 'cot-strict' or 'flexible'")
    text = bounded(text, limit)
    if mode != "flexible":
        # group_select defaults to 0 there: the first match.
        first = pattern.search(text)
        return first[1].strip() if first else _LM_EVAL_FALLBACK
    last = None
    for last in pattern.finditer(text):  # group_select: -1 picks the last match
        pass
    if last is None:
        return _LM_EVAL_FALLBACK
    # Exactly one of its two groups is non-empty.
    return next(group for group in last.groups() if group).strip()


def _lm_eval_clean(s: str) -> str:
    """The task's regexes_to_ignore: ",", "\\$", "(?s).*#### ", "\\.$", in that order, then
    ignore_case. The third, as a regex, is quadratic on long text; it deletes everything up
    to the last "#### ", which rpartition does in one pass."""
    s = s.replace(",", "").replace("$", "")
    s = s.rpartition("#### ")[2]
    return _LM_EVAL_PERIOD_RE.sub("", s).lower()


def _lm_eval_target(gold_field: str, mode: LmEvalMode) -> str:
    # gsm8k compares with the whole answer field; gsm8k_cot with what follows the last "####".
    return gold_field.rpartition("####")[2].strip() if mode == "cot-strict" else gold_field


def lm_eval_correct(text: str, gold_field: str, mode: LmEvalMode) -> bool:
    """lm-eval's exact_match: the filtered prediction vs. the task's target."""
    prediction = lm_eval_extract(text, mode)
    return _lm_eval_clean(prediction) == _lm_eval_clean(_lm_eval_target(gold_field, mode))


_LM_EVAL_RULES: dict[str, LmEvalMode] = {
    "lm-eval-strict": "strict",
    "lm-eval-cot-strict": "cot-strict",
    "lm-eval-flexible": "flexible",
}


def score(
    text: str, gold_field: str, rule: ScoringRule = "ours", tolerance: Tolerance | None = None
) -> tuple[str | None, bool]:
    """(prediction, correct) for one model output under one scoring rule.

    For the lm-eval rules the prediction is their filtered string, with their
    "[invalid]" fallback reported as None so that "no answer" looks the same under
    every rule; `tolerance` applies to ours only.
    """
    if rule == "ours":
        prediction = extract_answer(text)
        return prediction, is_correct(prediction, parse_gold(gold_field), tolerance)
    mode = _LM_EVAL_RULES.get(rule)
    if mode is None:
        raise ValueError(
            f"unknown scoring rule {rule!r}: expected one of 'ours', {', '.join(map(repr, _LM_EVAL_RULES))}"
        )
    filtered = lm_eval_extract(text, mode)
    correct = lm_eval_correct(text, gold_field, mode)
    return (None if filtered == _LM_EVAL_FALLBACK else filtered), correct
