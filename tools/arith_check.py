"""The arithmetic step checker: every `expression = value` a solution states is re-evaluated.

Programmatic and free: no model call. For each line of reasoning it finds the equations written
in it (`16 - 3 - 4 = 9`, `$80,000 * 1.5 = $120,000`, chains `2 + 3 = 5 + 1 = 6`), evaluates each
side with the project's calculator and marks the step wrong when a stated value is not what its
expression gives (a value rounded to the places it is written with counts as right: `100/3 = 33.33`).

What it catches: calculation slips. What it cannot catch: a wrong setup — the wrong operand, the
wrong operation, a misread question — because an equation that is wrong about the problem but
right as arithmetic checks out. A step with no equation in it passes unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from reasoner.verdict import Verdict
from reasoner.tools.calculator import CalculatorError, calculate

# What an arithmetic expression can be written with (currency and spaces included).
_ARITH = set("0123456789.,+-*/×÷−^()%$ \t")
# "3 x 4" is how people write a product; only between numbers.
_TIMES = re.compile(r"(?<=[\d)])\s*[xX]\s*(?=[\d($])")
_OPERATOR = re.compile(r"[\d)%]\s*[-+*/×÷−^]\s*[\d($.]")
_MIXED = re.compile(r"(?<![\d./])(\d+)\s+(\d+/\d+)(?![\d./])")
_IMPLICIT = re.compile(r"(?<=[\d)])\s+\((?=[\d(.])")
_GAP = re.compile(r"(?<=[\d%)])\s+(?=[\d(.])")
_LEADING_NUMBER = re.compile(r"^-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")


@dataclass(frozen=True)
class Equation:
    expression: str
    stated: str


def equations(line: str) -> list[Equation]:
    """The `expression = value` pairs a line states, in order. An expression must have an
    operator between numbers: `x = 5` or `Total = 5` state nothing to check."""
    text = _TIMES.sub(" * ", line)
    text = _MIXED.sub(r"(\1 + \2)", text)  # "3 1/2" is three and a half
    text = _IMPLICIT.sub(" * (", text)  # "1/2 (68)" is a product
    parts = text.split("=")
    found: list[Equation] = []
    for i in range(len(parts) - 1):
        left = _trailing_run(parts[i]) if i == 0 or not _whole_run(parts[i]) else parts[i]
        right = _leading_run(parts[i + 1])
        left, right = _trim(left, last=True), _trim(right, last=False)
        # An expression that begins with an operator continues algebra ("3x + 4 - 4 = 24"): not arithmetic.
        if left and right and left[0] not in "+*/^×÷" and _OPERATOR.search(left) and re.search(r"\d", right):
            found.append(Equation(left, right))
    return found


def _whole_run(part: str) -> bool:
    # Between two "=" signs of a chain the whole part is arithmetic (`= 5 + 1 =`).
    return bool(part.strip()) and all(c in _ARITH for c in part)


def _trailing_run(text: str) -> str:
    i = len(text)
    while i > 0 and text[i - 1] in _ARITH:
        i -= 1
    return text[i:]


def _leading_run(text: str) -> str:
    i = 0
    while i < len(text) and text[i] in _ARITH:
        i += 1
    return text[:i]


def _trim(run: str, last: bool) -> str:
    run = run.strip().strip(",").rstrip(".").strip()
    # Parentheses the sentence opened or closed around the equation are not the expression's.
    while run.startswith("(") and run.count("(") > run.count(")"):
        run = run[1:].strip()
    while run.endswith(")") and run.count(")") > run.count("("):
        run = run[:-1].strip()
    # A clause before the expression ("5 apples, 3 + 2 = 5"): keep the part after ", ".
    if ", " in run:
        run = run.rsplit(", ", 1)[1]
    # Two numbers with only a space between are not one expression ("$50,000 * 50% 50000 * .5"):
    # an expression is what follows the last such gap, a stated value what comes before the first.
    pieces = _GAP.split(run.replace("$", ""))
    run = pieces[-1] if last else pieces[0]
    return run.strip()


def _value(text: str) -> Fraction:
    return Fraction(calculate(text))


def check(equation: Equation) -> str | None:
    """Why the equation is wrong, or None when it holds (or cannot be read as arithmetic)."""
    try:
        true = _value(equation.expression)
    except (CalculatorError, ValueError, ZeroDivisionError):
        return None  # not arithmetic the calculator reads: nothing to say about it
    try:
        stated = _value(equation.stated)
    except (CalculatorError, ValueError, ZeroDivisionError):
        # "= 150 4-packs": the value is the number the right side begins with.
        leading = _LEADING_NUMBER.match(equation.stated)
        if leading is None:
            return None
        stated = _value(leading[0])
    if true == stated:
        return None
    places = len(equation.stated.split(".", 1)[1].rstrip("% ")) if "." in equation.stated else 0
    # A value written rounded (33.33 for 100/3) is right to the places it shows.
    if abs(true - stated) <= Fraction(1, 2 * 10**places) and true.denominator != 1:
        return None
    return f"{equation.expression} = {equation.stated}, but {equation.expression} is {calculate(equation.expression)}"


def check_steps(steps: Sequence[str], spec: str = "arith") -> Verdict:
    scores: list[float] = []
    notes: dict[str, str] = {}
    for i, step in enumerate(steps):
        wrong = [why for eq in equations(step) if (why := check(eq))]
        scores.append(0.0 if wrong else 1.0)
        if wrong:
            notes[str(i)] = "; ".join(wrong)
    return Verdict(verifier=spec, steps=list(steps), scores=scores, notes=notes)
