"""A step-level simulated model of GSM8K reasoning, for testing and benchmarking verifiers.

Tiny real models cannot show what a verifier does, so this one writes a question's gold solution
as steps, from the `<<expr=value>>` calculator annotations GSM8K's answers carry, and slips:
* an **arithmetic slip** states a result its own expression does not give (`9 * 2 = 19`);
* a **logic slip** uses a wrong operand or operation, with the arithmetic right (`9 + 2 = 11`).
Later steps carry a wrong value on, so either slip makes the final answer wrong. Given any prefix
of steps (a partial solution in the prompt), it reads the values that prefix states and goes on
from there, correctly or with new slips, so backtracking and beam search can resume. It knows
where each trace's first error is, and of which kind (`errors`, `first_error`).

Served over real HTTP by `reasoner.testing.fake_openai`:

    sim = StepSimulator(load_gsm8k("test")[:300], arith_rate=0.05, logic_rate=0.02)
    with FakeOpenAIServer(responder=sim.respond) as server: ...

A request is recognised by the question it contains (the last one, after any exemplars); the
steps already written are the lines after the question that match the gold steps in order. A
judge's request ("Is the last step …" / "Is this solution correct") is answered by a simulated
judge that is right with probability `judge_accuracy`. Randomness comes from the request's seed,
the choice index and the prefix, so equal requests give equal samples; without a seed, a counter.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from reasoner.data import Problem

SlipKind = Literal["arith", "logic"]
_ANNOTATION = re.compile(r"<<([^=<>]*)=([^<>]*)>>")
# The equation a rendered step states: the expression, then the value after " = ".
_STATED = re.compile(r"([\d.()+\-*/ ]*\d[\d.()+\-*/ ]*?)\s=\s(-?\d+(?:\.\d+)?)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_FINAL = re.compile(r"The answer is (-?\d+(?:\.\d+)?)")
_JUDGE = re.compile(r"Is the last step|Is this solution correct")
_MARKER = re.compile(r"^\s*(?:A:|Step \d+:)\s*")
# How a step may begin besides the gold wording: the simulated model's paraphrases.
LEADS = ("So ", "Then ", "Next, ")
_LEAD = re.compile(r"^(?:(?:so|then|next),?\s+)+", re.IGNORECASE)
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def evaluate(expression: str) -> Fraction:
    """Exact value of + - * / arithmetic (all the annotations use). Raises ValueError otherwise."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))  # type: ignore[no-any-return]
        raise ValueError(f"not simple arithmetic: {expression!r}")

    try:
        return walk(ast.parse(expression.strip(), mode="eval"))
    except (SyntaxError, ZeroDivisionError) as exc:
        raise ValueError(f"not simple arithmetic: {expression!r} ({exc})") from None


def show(value: Fraction) -> str:
    """A value as a solution writes it: an integer, else rounded to two places."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def agrees(stated: Fraction, true: Fraction) -> bool:
    return stated == true or (true.denominator != 1 and abs(stated - true) <= Fraction(1, 200))


def spaced(expression: str) -> str:
    return re.sub(r"\s*([+\-*/])\s*", r" \1 ", expression).strip()


@dataclass(frozen=True)
class GoldStep:
    #: The prose around the step's calculations: len(texts) == len(calcs) + 1.
    texts: tuple[str, ...]
    #: (expression, value) of each calculation, as annotated.
    calcs: tuple[tuple[str, str], ...]

    @property
    def skeleton(self) -> str:
        return _skeleton("".join(self.texts))

    def stated(self, line: str) -> list[tuple[str, str]]:
        """The (expression, value) pairs a line states for this step's calculations: equations
        the gold prose itself writes without an annotation are not among them."""
        fixed = {m for text in self.texts for m in _STATED.findall(text)}
        return [m for m in _STATED.findall(line) if m not in fixed]


def _skeleton(line: str) -> str:
    return re.sub(r"[^a-z]", "", _LEAD.sub("", _MARKER.sub("", line).strip()).lower())


def parse_gold(answer_field: str) -> tuple[list[GoldStep], str]:
    """A GSM8K answer as steps (one per line) and the final number."""
    body, _, final = answer_field.rpartition("####")
    steps = []
    for line in body.strip().splitlines():
        if not line.strip():
            continue
        pieces = _ANNOTATION.split(line)
        texts, calcs = [pieces[0]], []
        for i in range(1, len(pieces), 3):
            expr, value, rest = pieces[i], pieces[i + 1], pieces[i + 2]
            calcs.append((expr.strip(), value.strip().replace(",", "")))
            # The text repeats the calculation before the annotation and its value after it.
            texts[-1] = re.sub(r"(?:[\d.,+\-*/()x×÷$ ]*=\s*\$?\s*)+$|\$\s*$", "", texts[-1]).rstrip() + " "
            texts.append(re.sub(r"^\$?[\d.,]+", "", rest))
        texts[0] = texts[0].lstrip() if calcs else texts[0].strip()
        steps.append(GoldStep(tuple(texts), tuple(calcs)))
    return steps, final.strip().replace(",", "")


class SimProblem:
    """One question's gold steps and how each calculation depends on earlier results."""

    def __init__(self, question: str, answer_field: str) -> None:
        self.question = question
        self.steps, self.answer = parse_gold(answer_field)
        self.gold_values = [evaluate_or(v) for s in self.steps for _, v in s.calcs]
        # The final answer is the last calculation giving the gold number (else a literal).
        gold = evaluate_or(self.answer)
        self.final_ref = max((k for k, v in enumerate(self.gold_values) if v == gold), default=None)

    def expected(self, k: int, expr: str, current: Sequence[Fraction]) -> str:
        """Calculation k's expression with earlier results replaced by the values stated for them."""
        changed = {self.gold_values[j]: current[j] for j in range(len(current)) if current[j] != self.gold_values[j]}

        def swap(match: re.Match[str]) -> str:
            value = Fraction(match[0])
            return show(changed[value]) if value in changed else match[0]

        return _NUMBER.sub(swap, expr) if changed else expr


def evaluate_or(text: str) -> Fraction:
    try:
        return evaluate(text)
    except ValueError:
        return Fraction(-1, 7)  # matches nothing a solution states


class StepSimulator:
    def __init__(
        self,
        problems: Sequence[Problem | tuple[str, str]],
        *,
        arith_rate: float = 0.05,
        logic_rate: float = 0.02,
        judge_accuracy: float = 0.9,
        paraphrase: float = 0.5,
        seed: int = 0,
    ) -> None:
        rates = {"arith_rate": arith_rate, "logic_rate": logic_rate, "judge_accuracy": judge_accuracy, "paraphrase": paraphrase}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {rate}")
        if arith_rate + logic_rate > 1.0:
            raise ValueError(f"arith_rate + logic_rate must be at most 1, got {arith_rate + logic_rate}")
        self.arith_rate, self.logic_rate, self.judge_accuracy, self.seed = arith_rate, logic_rate, judge_accuracy, seed
        # The share of steps begun with a lead word ("So ", "Then "): a right step can be written
        # more than one way, so a resample that must differ from a rejected step can still be right.
        self.paraphrase = paraphrase
        self.problems: dict[str, SimProblem] = {}
        for p in problems:
            question, answer_field = (p.question, p.answer_field) if isinstance(p, Problem) else p
            self.problems[question] = SimProblem(question, answer_field)
        self._unseeded = itertools.count()

    # -- the model -------------------------------------------------------------------------------

    def respond(self, body: dict[str, Any], index: int) -> str:
        """A FakeOpenAIServer responder: the next steps of the solution, or a judge's verdict."""
        text = _request_text(body)
        problem, tail = self.find(text)
        salt = body.get("seed")
        salt = f"s{salt}" if salt is not None else f"u{next(self._unseeded)}"
        if _JUDGE.search(text):
            return self._judge(problem, tail, f"{salt}:{index}")
        prefix = self.prefix(problem, tail)
        rng = random.Random(_digest(self.seed, problem.question, salt, index, *prefix))
        return "\n".join(self.continue_from(problem, prefix, rng))

    def find(self, text: str) -> tuple[SimProblem, str]:
        """The question the request asks (its last known one) and the text after it."""
        best, at = None, -1
        for question, problem in self.problems.items():
            i = text.rfind(question)
            if i > at:
                best, at = problem, i
        if best is None:
            raise ValueError(f"the simulated model knows no question in this request: {text[-200:]!r}")
        return best, text[at + len(best.question) :]

    def prefix(self, problem: SimProblem, tail: str) -> list[str]:
        """The steps already written: lines of the tail matching the gold steps, in order."""
        found: list[str] = []
        for line in tail.splitlines():
            j = len(found)
            if j >= len(problem.steps):
                break
            step = problem.steps[j]
            if _skeleton(line) == step.skeleton and len(step.stated(line)) == len(step.calcs):
                found.append(_MARKER.sub("", line).strip())
        return found

    def continue_from(self, problem: SimProblem, prefix: Sequence[str], rng: random.Random) -> list[str]:
        """The remaining steps after `prefix`, then the answer line, slipping at the set rates."""
        current = self.stated_values(problem, prefix)
        out: list[str] = []
        for step in problem.steps[len(prefix) :]:
            lead = rng.choice(LEADS) if rng.random() < self.paraphrase else ""
            pieces = [lead + step.texts[0]]
            for (expr, value), text in zip(step.calcs, step.texts[1:]):
                k = len(current)
                expr_now = problem.expected(k, expr, current)
                try:
                    true = evaluate(expr_now)
                except ValueError:  # an earlier slip made a zero divisor: write the gold expression
                    expr_now, true = expr, evaluate_or(value)
                stated_expr, stated = expr_now, true
                roll = rng.random()
                if roll < self.arith_rate:
                    stated = _wrong_value(true, rng)
                elif roll < self.arith_rate + self.logic_rate:
                    stated_expr = _wrong_setup(expr_now, rng)
                    stated = evaluate(stated_expr)
                shown = value if (stated_expr == expr and stated == problem.gold_values[k]) else show(stated)
                current.append(Fraction(shown))
                pieces.append(f"{spaced(stated_expr)} = {shown}{text}")
            out.append("".join(pieces).strip())
        out.append(f"The answer is {self.final(problem, current)}.")
        return out

    def usable(self, question: str) -> bool:
        """Whether the question's gold solution, written without slips, checks out here (a few
        GSM8K annotations are not plain arithmetic, e.g. `<<3/4=3/4>>`)."""
        problem = self.problems[question]
        clean = StepSimulator([(question, "")], arith_rate=0, logic_rate=0, paraphrase=0)
        clean.problems[question] = problem
        steps = clean.continue_from(problem, [], random.Random(0))
        return clean.first_error(question, steps) is None and steps[-1] == f"The answer is {problem.answer}."

    def final(self, problem: SimProblem, current: Sequence[Fraction]) -> str:
        if problem.final_ref is None or problem.final_ref >= len(current):  # a literal, or not reached
            return problem.answer
        return show(current[problem.final_ref])

    def stated_values(self, problem: SimProblem, steps: Sequence[str]) -> list[Fraction]:
        values: list[Fraction] = []
        for line, step in zip(steps, problem.steps):
            values += [Fraction(v) for _, v in step.stated(line)[: len(step.calcs)]]
        return values

    # -- what it knows about a trace --------------------------------------------------------------

    def errors(self, question: str, steps: Sequence[str]) -> list[SlipKind | None]:
        """Each step's error, judged on its own with the values the steps before it state: a
        stated value its expression does not give is "arith", a wrong expression "logic". The
        answer line is wrong ("logic") when it is not what the stated calculations give."""
        problem = self.problems[question]
        current: list[Fraction] = []
        kinds: list[SlipKind | None] = []
        for i, line in enumerate(steps):
            if i >= len(problem.steps):
                said = _FINAL.search(line)
                right = said is not None and Fraction(said[1]) == evaluate_or(self.final(problem, current))
                kinds.append(None if right else "logic")
                break
            step, kind = problem.steps[i], None
            stated = step.stated(line)
            if len(stated) != len(step.calcs):
                kind = "logic"
            for (gold_expr, _), (expr, value) in zip(step.calcs, stated):
                k = len(current)
                true, said_value = evaluate_or(expr), Fraction(value)
                if kind is None and not agrees(said_value, true):
                    kind = "arith"
                elif kind is None and true != evaluate_or(problem.expected(k, gold_expr, current)):
                    kind = "logic"
                current.append(said_value)
            kinds.append(kind)
        return kinds

    def first_error(self, question: str, steps: Sequence[str]) -> tuple[int, SlipKind] | None:
        """Where the trace first goes wrong and how; a trace ending before its answer is wrong there."""
        kinds = self.errors(question, steps)
        for i, kind in enumerate(kinds):
            if kind is not None:
                return i, kind
        if len(kinds) <= len(self.problems[question].steps):
            return len(kinds), "logic"
        return None

    def _judge(self, problem: SimProblem, tail: str, salt: str) -> str:
        steps = [m[1].strip() for m in re.finditer(r"^Step \d+: (.*)$", tail, re.MULTILINE)]
        if steps:  # one step judged, given those before it
            right = self.errors(problem.question, steps)[-1] is None
        else:
            lines = [ln for ln in tail.splitlines() if ln.strip() and not _JUDGE.search(ln) and not ln.startswith("Solution")]
            right = self.first_error(problem.question, lines) is None
        rng = random.Random(_digest(self.seed, "judge", tail, salt))
        honest = rng.random() < self.judge_accuracy
        return "Yes" if right == honest else "No"


def _wrong_value(true: Fraction, rng: random.Random) -> Fraction:
    """A calculation slip: off by a little, by ten, or a dropped digit."""
    base = Fraction(show(true))
    for _ in range(10):
        wrong = base + rng.choice([1, 2, 3, 5, 10, -1, -2, -10]) if rng.random() < 0.8 else base * 10
        if wrong != base and (wrong > 0 or true <= 0):
            return wrong
    return base + 1


def _wrong_setup(expr: str, rng: random.Random) -> str:
    """A logic slip: one operand off, or one operation swapped, so the value changes."""
    true = evaluate(expr)
    numbers = list(_NUMBER.finditer(expr))
    for _ in range(20):
        if rng.random() < 0.5 and numbers:
            m = rng.choice(numbers)
            new = show(Fraction(m[0]) + rng.choice([1, 2, 3, -1]))
            candidate = expr[: m.start()] + new + expr[m.end() :]
        else:
            ops = [m for m in re.finditer(r"(?<=[\d)\s])[+\-*](?=[\s\d(])", expr)]
            if not ops:
                continue
            m = rng.choice(ops)
            candidate = expr[: m.start()] + rng.choice([o for o in "+-*" if o != m[0]]) + expr[m.end() :]
        try:
            if evaluate(candidate) != true and (evaluate(candidate) > 0 or true <= 0):
                return candidate
        except ValueError:
            continue
    return f"{expr} + 1"


def _request_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        return "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
