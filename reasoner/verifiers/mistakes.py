"""Training data for the mistake-finder: step-labelled traces.

Two sources:
* **made here** from GSM8K train solutions: each gold solution is written as steps (the way the
  step simulator writes them, from the `<<expr=value>>` annotations), and one calculation, drawn
  at random, gets a programmatic mistake: a wrong operand (a number nudged or scaled by ten;
  see `SWAP_SHARE`), a wrong operation, a dropped quantity (one term
  of the expression left out), or an arithmetic slip (the stated value is not what the expression
  gives). Later steps carry the wrong value on, as a model's would. Each step is then labelled by
  the step simulator's own judge (`StepSimulator.errors`), so a "mistake" that happens to give the
  right value is not counted as one;
* **labelled by a user**, in BIG-Bench Mistake's shape, one JSON object a line:

      {"question": "...", "steps": ["step 1", "step 2", ...], "mistake_index": 1}

  `mistake_index` is the index (from 0) of the first wrong step, or null when every step is right;
  `input` is accepted for `question` (BIG-Bench Mistake's name). An optional `mistake_type`
  ("arith" or "logic") is kept for the report. Steps after the first mistake are not labelled
  (they may or may not be right), so they are not trained on.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from reasoner.data import DataError, Problem, _rows
from reasoner.simulators.steps import LEADS, SimProblem, StepSimulator, evaluate, show, spaced
from reasoner.verifiers.features import quantities

MISTAKES = ("operand", "operation", "dropped", "arith")
#: Of wrong operands, the share that are another quantity of the question (the rest: a number nudged
#: or scaled by ten). Off by default: such a step looks exactly like a right one to these features, so
#: it only teaches the model that well-grounded operands can be wrong (measured on the simulator's
#: held-out traces: logic-slip recall 31% with a share of 0.3, 42% without).
SWAP_SHARE = 0.0
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_OP = re.compile(r"(?<=[\d)\s])[+\-*/](?=[\s\d(.])")


@dataclass
class Trace:
    """A question, its steps, and each step's label: 1 the first mistake, 0 right, None unknown."""

    question: str
    steps: list[str]
    labels: list[int | None]
    #: The first mistake's kind ("arith" or "logic", from the simulator's judge), where known.
    kind: str | None = None
    #: What made the mistake ("operand", "operation", "dropped", "arith"), or "user"/"clean".
    made: str = "clean"
    source: str = field(default="gsm8k-train", compare=False)

    @property
    def first_mistake(self) -> int | None:
        return next((i for i, label in enumerate(self.labels) if label == 1), None)


# -- mistakes made programmatically -----------------------------------------------------------------


def wrong_operand(expr: str, question: set[Fraction], rng: random.Random) -> str | None:
    numbers = list(_NUMBER.finditer(expr))
    if not numbers:
        return None
    for _ in range(10):
        m = rng.choice(numbers)
        old = Fraction(m[0])
        others = [q for q in question if q != old and q > 0]
        roll = rng.random()
        if roll < SWAP_SHARE and others:
            new = rng.choice(sorted(others))
        elif roll < 0.4:
            new = old * 10
        else:
            new = old + rng.choice([1, 2, 3, 4, 5, -1, -2, -3])
        if new > 0:
            return expr[: m.start()] + show(new) + expr[m.end() :]
    return None


def wrong_operation(expr: str, rng: random.Random) -> str | None:
    ops = list(_OP.finditer(expr))
    if not ops:
        return None
    m = rng.choice(ops)
    return expr[: m.start()] + rng.choice([o for o in "+-*/" if o != m[0]]) + expr[m.end() :]


def dropped_quantity(expr: str, rng: random.Random) -> str | None:
    """One term and its operator left out: `16 - 3 - 4` as `16 - 3` (only where two remain)."""
    terms = re.split(r"\s*([+\-*/])\s*", expr.strip())
    if len(terms) < 5 or any(not _NUMBER.fullmatch(t) for t in terms[::2]):
        return None
    drop = rng.randrange(len(terms) // 2) * 2 + 2  # a term after the first, with the operator before it
    return " ".join(terms[: drop - 1] + terms[drop + 1 :])


def arithmetic_slip(true: Fraction, rng: random.Random) -> Fraction:
    base = Fraction(show(true))
    roll = rng.random()
    if roll < 0.15:
        return base * 10
    if roll < 0.25 and base.denominator == 1 and base >= 10:
        digits = str(base.numerator)
        i = rng.randrange(len(digits) - 1)
        swapped = Fraction(digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :])
        if swapped != base:
            return swapped
    return base + rng.choice([1, 2, 3, 4, 5, 10, -1, -2, -3, -10])


def write(problem: SimProblem, mistake: tuple[int, str] | None, rng: random.Random, question: set[Fraction],
          paraphrase: float = 0.5) -> list[str] | None:  # fmt: skip
    """The gold solution as steps with `mistake` (calculation index, kind) made; None where the
    mistake cannot be made there or the solution is not plain arithmetic."""
    current: list[Fraction] = []
    out: list[str] = []
    for step in problem.steps:
        pieces = [(rng.choice(LEADS) if rng.random() < paraphrase else "") + step.texts[0]]
        for (expr, value), text in zip(step.calcs, step.texts[1:]):
            k = len(current)
            expr_now = problem.expected(k, expr, current)
            try:
                true = evaluate(expr_now)
            except ValueError:
                return None
            stated_expr, stated = expr_now, true
            if mistake is not None and mistake[0] == k:
                kind = mistake[1]
                if kind == "arith":
                    stated = arithmetic_slip(true, rng)
                else:
                    made = (wrong_operand(expr_now, question, rng) if kind == "operand"
                            else wrong_operation(expr_now, rng) if kind == "operation" else dropped_quantity(expr_now, rng))  # fmt: skip
                    if made is None:
                        return None
                    try:
                        stated_expr, stated = made, evaluate(made)
                    except ValueError:
                        return None
            shown = value if (stated_expr == expr and stated == problem.gold_values[k]) else show(stated)
            current.append(Fraction(shown))
            pieces.append(f"{spaced(stated_expr)} = {shown}{text}")
        out.append("".join(pieces).strip())
    final = problem.answer if problem.final_ref is None or problem.final_ref >= len(current) else show(current[problem.final_ref])
    out.append(f"The answer is {final}.")
    return out


def made_traces(problems: Sequence[Problem], *, per_problem: int = 2, mistake_share: float = 0.6, seed: int = 0) -> list[Trace]:
    """`per_problem` traces of each problem, a share of them with one programmatic mistake,
    labelled by the step simulator's judge. Problems whose gold solution the simulator cannot
    write and check (annotations that are not plain arithmetic) are left out."""
    sim = StepSimulator(problems, arith_rate=0.0, logic_rate=0.0)
    rng = random.Random(seed)
    traces: list[Trace] = []
    for p in problems:
        problem = sim.problems[p.question]
        calcs = len(problem.gold_values)
        if calcs == 0 or not sim.usable(p.question):  # the simulator could not judge its steps
            continue
        found = quantities(p.question)
        for _ in range(per_problem):
            mistake = (rng.randrange(calcs), rng.choice(MISTAKES)) if rng.random() < mistake_share else None
            steps = write(problem, mistake, rng, found)
            if steps is None and mistake is not None:  # that mistake cannot be made there: a slip can
                mistake = (mistake[0], "arith")
                steps = write(problem, mistake, rng, found)
            if steps is None:
                break
            traces.append(judged(sim, p.question, steps, made=mistake[1] if mistake else "clean"))
    return [t for t in traces if t.made == "clean" or t.kind is not None]


def judged(sim: StepSimulator, question: str, steps: list[str], made: str = "clean", source: str = "gsm8k-train") -> Trace:
    """Steps labelled by the simulator: its first error 1, the rest 0 (later steps carry the value on
    and are right given it, as the simulator's judge reads each step given the steps before it)."""
    kinds = sim.errors(question, steps)
    first = next((i for i, k in enumerate(kinds) if k is not None), None)
    labels: list[int | None] = [0] * len(steps)
    if first is not None:
        labels[first] = 1
    if len(kinds) < len(steps):  # steps past the answer: not judged
        labels[len(kinds) :] = [None] * (len(steps) - len(kinds))
    return Trace(question, list(steps), labels, kinds[first] if first is not None else None, made, source)


# -- labelled by a user -------------------------------------------------------------------------------


def load_labelled(path: str | Path) -> list[Trace]:
    """Traces from a JSONL file in BIG-Bench Mistake's shape (see the module docstring); a bad row
    is refused naming the file, line and field."""
    path = Path(path)
    traces = []
    for _, where, row in _rows(path):
        question = row.get("question", row.get("input"))
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{where}: field 'question' (or 'input') must be non-empty text, got {_shown(question)}")
        steps = row.get("steps")
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
            raise DataError(f"{where}: field 'steps' must be a non-empty list of non-empty texts, got {_shown(steps)}")
        if "mistake_index" not in row:
            raise DataError(f"{where}: field 'mistake_index' is missing (the first wrong step's index from 0, or null)")
        at = row["mistake_index"]
        if at is not None and (isinstance(at, bool) or not isinstance(at, int) or not 0 <= at < len(steps)):
            raise DataError(f"{where}: field 'mistake_index' must be null or an integer from 0 to {len(steps) - 1}, got {_shown(at)}")
        kind = row.get("mistake_type")
        if kind is not None and kind not in ("arith", "logic"):
            raise DataError(f"{where}: field 'mistake_type' must be 'arith', 'logic' or absent, got {_shown(kind)}")
        labels: list[int | None] = [0] * len(steps) if at is None else [0] * at + [1] + [None] * (len(steps) - at - 1)
        traces.append(Trace(question, [s.strip() for s in steps], labels, kind if at is not None else None, "user", str(path)))
    if not traces:
        raise DataError(f"{path}: no labelled traces in the file")
    return traces


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def split_by_question(traces: Iterable[Trace], held_out: float, seed: int = 0) -> tuple[list[Trace], list[Trace]]:
    """(train, held out): every trace of a question on one side, so held-out questions are unseen."""
    traces = list(traces)
    questions = sorted({t.question for t in traces})
    random.Random(seed).shuffle(questions)
    out = set(questions[: round(len(questions) * held_out)])
    return [t for t in traces if t.question not in out], [t for t in traces if t.question in out]
