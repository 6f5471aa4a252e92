"""What the mistake-finder sees of one step: sparse named features, from the question and the
steps before it only (a step is judged as the first mistake would be, given what came before).

The features are the cues a careful reader uses without knowing the answer:
* does the step's arithmetic hold (`arith_check`), so calculation slips are seen;
* where each operand comes from: a quantity of the question (numbers, number words, percents),
  a result stated earlier, a common constant, or nowhere, and whether a number from nowhere is a
  near miss of one that is there (a copied 16 written 17): the mark of a wrong operand;
* which operation is used beside which words of the step (`times` with `*`, `left` with `-`):
  crossed operation-and-word features, so a swapped operation can look out of place;
* the result's shape (fractional, negative, far larger than its operands), whether the step uses
  the result just before it, and, on the answer line, whether the answer is the last result.
Word features are hashed into a fixed number of buckets so a model file stays small.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from fractions import Fraction

from reasoner.tools.arith_check import check, equations
from reasoner.tools.calculator import CalculatorError, calculate

#: Buckets of the hashed word features.
BUCKETS = 1 << 15
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?%?|(?<![\w.])\.\d+%?")
_WORD = re.compile(r"[a-z]+")
_FINAL = re.compile(r"answer is\s*\$?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)
_OPERATOR = re.compile(r"(?<=[\d)\s])([-+*/×÷x])(?=[\s\d($.])")
_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100,
    "thousand": 1000, "dozen": 12, "twice": 2, "double": 2, "triple": 3, "thrice": 3, "half": 2, "quarter": 4,
    "third": 3, "week": 7, "hour": 60, "minute": 60, "year": 12, "day": 24,
}
#: Numbers a solution uses without the question saying them (units, halves, percents).
CONSTANTS = frozenset(Fraction(n) for n in (1, 2, 3, 4, 5, 7, 10, 12, 24, 30, 52, 60, 100, 365, 1000)) | {Fraction(1, 2)}
#: Words that say which operation a step means.
CUES = {
    **dict.fromkeys("total altogether together combined sum more plus add adds added adding increase increased gains".split(), "add"),
    **dict.fromkeys("left remaining remain remains fewer less minus subtract difference after spent lost gave decrease reduced".split(), "sub"),
    **dict.fromkeys("times each per every multiply multiplied product twice double triple week weeks hours days".split(), "mul"),
    **dict.fromkeys("divide divided split half average share shared among ratio percent rate".split(), "div"),
}
_STOP = frozenset("the a an of to and is in for so then next that it he she they his her their we be".split())


def number(text: str) -> Fraction | None:
    text = text.replace(",", "").rstrip("%")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def quantities(text: str) -> set[Fraction]:
    """The numbers a text states: digits (a percent also as its fraction) and number words."""
    found: set[Fraction] = set()
    for match in _NUMBER.finditer(text):
        value = number(match[0])
        if value is not None:
            found.add(value)
            if match[0].endswith("%") or text[match.end() : match.end() + 8].lstrip().startswith("percent"):
                found.update({value / 100, 1 + value / 100, 1 - value / 100})
    for word in _WORD.findall(text.lower()):
        base = word[:-1] if word.endswith("s") and word[:-1] in _WORDS else word
        if base in _WORDS:
            found.add(Fraction(_WORDS[base]))
    return found


def windows(text: str, width: int = 3) -> dict[Fraction, set[str]]:
    """The words around each quantity of a text (`three times as many` gives 3 the words `times`,
    `as`, `many` and those before it), to cross with the operation that uses it."""
    tokens = re.findall(r"\d[\d,]*(?:\.\d+)?%?|\.\d+%?|[a-z]+", text.lower())
    near: dict[Fraction, set[str]] = {}
    for i, token in enumerate(tokens):
        value = number(token) if token[0].isdigit() or token[0] == "." else (Fraction(_WORDS[token]) if token in _WORDS else None)
        if value is None:
            continue
        around = tokens[max(0, i - width) : i] + tokens[i + 1 : i + 1 + width]
        near.setdefault(value, set()).update(w for w in around if w.isalpha() and w not in _STOP)
    return near


def _near(value: Fraction, known: set[Fraction]) -> bool:
    """A near miss of a known number: off by a little, or by a factor of ten."""
    return any(0 < abs(value - k) <= 3 or value == k * 10 or k == value * 10 for k in known)


def _hash(name: str) -> str:
    return f"h{zlib.crc32(name.encode()) % BUCKETS}"


def _value(expression: str) -> Fraction | None:
    try:
        return Fraction(calculate(expression))
    except (CalculatorError, ValueError, ZeroDivisionError):
        return None


class Context:
    """What is known before a step: the question's quantities and the results stated so far."""

    def __init__(self, question: str) -> None:
        self.question = quantities(question)
        self.windows = windows(question)
        self.results: list[Fraction] = []
        self.mentioned: set[Fraction] = set()
        #: Numbers used as operands so far: a question's quantity a solution never uses is suspect.
        self.used: set[Fraction] = set()

    def add(self, step: str) -> None:
        for eq in equations(step):
            value = number(eq.stated.split()[0]) if eq.stated.split() else None
            if value is not None:
                self.results.append(value)
            self.used |= {v for m in _NUMBER.finditer(eq.expression) if (v := number(m[0])) is not None}
        self.mentioned |= quantities(step)


def step_features(context: Context, step: str, *, index: int, is_answer: bool) -> dict[str, float]:
    """The features of `step` given what `context` holds (the steps before it)."""
    f: dict[str, float] = {"bias": 1.0, "first" if index == 0 else "later": 1.0}
    lowered = step.lower()
    words = [w for w in _WORD.findall(lowered) if w not in _STOP]
    for w in set(words):
        f[_hash("w:" + w)] = 1.0
    if is_answer:
        return _answer_features(context, step, f)
    found = equations(step)
    if not found:
        f["no_equation"] = 1.0
        return f
    known = context.question | set(context.results) | context.mentioned
    for eq in found:
        if check(eq) is not None:
            f["arith_wrong"] = 1.0
        operands = [v for m in _NUMBER.finditer(eq.expression) if (v := number(m[0])) is not None]
        ops = _OPERATOR.findall(eq.expression)
        f[f"n_operands={min(len(operands), 4)}"] = 1.0
        ungrounded = 0
        unused = context.question - context.used - set(operands)
        for v in operands:
            where = _origin(v, context, known)
            f[f"operand:{where}"] = f.get(f"operand:{where}", 0.0) + 1.0
            ungrounded += where in ("near", "nowhere", "constant_near")
            # A number from outside the context next to a quantity no step has used yet: copied wrong.
            if where != "question" and where != "result" and _near(v, unused):
                f[f"misses_unused:{where}"] = 1.0
        f[f"ungrounded={min(ungrounded, 2)}"] = 1.0
        if context.results:
            f["uses_last" if context.results[-1] in operands else "skips_last"] = 1.0
            f["uses_a_result" if set(operands) & set(context.results) else "uses_no_result"] = 1.0
        cues = {w for v in operands for w in context.windows.get(v, ())}
        for op in set(ops):
            op = {"×": "*", "x": "*", "÷": "/"}.get(op, op)
            f[f"op:{op}"] = 1.0
            for w in set(words):
                f[_hash(f"x:{op}:{w}")] = 1.0
            for w in cues:  # the words beside the operands where the question states them
                f[_hash(f"q:{op}:{w}")] = 1.0
            for cue in {CUES[w] for w in words if w in CUES}:
                f[f"cue:{cue}:op:{op}"] = 1.0
            for cue in {CUES[w] for w in cues if w in CUES}:
                f[f"qcue:{cue}:op:{op}"] = 1.0
            for w in _before(step, eq.expression):
                f[_hash(f"pre:{op}:{w}")] = 1.0
        true = _value(eq.expression)
        if true is not None:
            if true.denominator != 1:
                f["fractional_result"] = 1.0
            if true < 0:
                f["negative_result"] = 1.0
            if operands and abs(true) > 50 * max(abs(v) for v in operands):
                f["result_much_larger"] = 1.0
            if true in context.question:
                f["result_in_question"] = 1.0
    return f


def _before(step: str, expression: str, n: int = 2) -> list[str]:
    """The last `n` words before the expression: what the step says it computes."""
    at = step.find(expression)
    return [w for w in _WORD.findall(step[: max(at, 0)].lower()) if w not in _STOP][-n:] if at > 0 else []


def _origin(value: Fraction, context: Context, known: set[Fraction]) -> str:
    if value in context.question:
        return "question"
    if value in context.results or value in context.mentioned:
        return "result"
    if value in CONSTANTS:
        return "constant_near" if value > 2 and _near(value, context.question) else "constant"
    return "near" if _near(value, known) else "nowhere"


def _answer_features(context: Context, step: str, f: dict[str, float]) -> dict[str, float]:
    f["answer_line"] = 1.0
    said = _FINAL.search(step)
    value = number(said[1]) if said else None
    if value is None:
        f["answer_unreadable"] = 1.0
    elif context.results and value == context.results[-1]:
        f["answer_is_last"] = 1.0
    elif value in context.results:
        f["answer_is_earlier_result"] = 1.0
    elif value in context.question:
        f["answer_in_question"] = 1.0
    else:
        f["answer_from_nowhere"] = 1.0
    return f


def is_answer_line(step: str) -> bool:
    return _FINAL.search(step) is not None and not equations(step)


def trace_features(question: str, steps: Sequence[str]) -> list[dict[str, float]]:
    """Each step's features, in order."""
    context = Context(question)
    out = []
    for i, step in enumerate(steps):
        out.append(step_features(context, step, index=i, is_answer=is_answer_line(step)))
        context.add(step)
    return out
