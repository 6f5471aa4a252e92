"""A simulated model that writes flowcharts (both of `flowchart`'s forms) for GSM8K questions, and
answers their sub-questions; every other request goes to the step simulator (`StepSimulator`).

The chart comes from the gold solution's `<<expr=value>>` annotations: each number the problem
states is an `ask` node (`What is number 1 of the problem, in "…sold 48 clips…"?`), each
annotated calculation a `compute` node over the names stored before, and the answer node names the
calculation giving the gold answer. So the charts also hold loops and branches, two rewrites that
keep the value: a multiplication of a stored value by a small count (2 to 10) becomes a counted loop
adding it that many times, and the first calculation sits behind a decision that a stored value
is positive (the other side computes something else). Per chart, at the rates set:
* `wrong_branch_rate`: the decision's comparison is flipped, so the flow takes the wrong side;
* `off_by_one_rate`: every counted loop runs once too many or too few times;
* `malformed_rate`: the chart is broken, one of `MALFORMED` (cut-off JSON, an edge to no node,
  a cycle with no exit, an undefined name, no answer node, a loop that never ends);
* `helper_rate` (program form): one calculation is a call of a helper the program never defines,
  which the model answers (Chain of Code).
An `ask` is answered right except at `ask_slip_rate` (a wrong number); a helper, likewise.
The same request and sample index give the same reply (randomness from the request's seed).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from reasoner.data import Problem
from reasoner.simulators.steps import StepSimulator, _digest, _request_text, _wrong_value, evaluate, show

GRAPH_PROMPT = "Write the problem as a flowchart"
PROGRAM_PROMPT = "Write the problem as a short Python function"
_SUB = re.compile(r"Sub-question: (.*)")
_HELPER = re.compile(r"calls (\w+)\((.*)\), a helper it never defined")
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
MALFORMED = ("truncated", "dangling", "cycle", "undefined", "no-answer", "endless")


@dataclass
class Plan:
    """A question's chart as the simulator writes it when nothing goes wrong."""

    asks: list[tuple[str, str, str]] = field(default_factory=list)  # (name, question, value)
    computes: list[tuple[str, str]] = field(default_factory=list)  # (name, expression over names)
    answer: str = ""
    loop: int | None = None  # the compute written as a loop: (index), its operand and count below
    loop_parts: tuple[str, str] = ("", "")  # (name added each round, count name)

    def value_of(self, question: str) -> str | None:
        return next((v for _, q, v in self.asks if q == question), None)


def plan_for(question: str, calcs: Sequence[tuple[str, str]], final: str) -> Plan | None:
    """The chart of a gold solution's calculations; None when they are not plain arithmetic."""
    plan, names, literals = Plan(), {}, {}  # names: a calculation's value -> its name
    for k, (expr, value) in enumerate(calcs):
        try:
            result = evaluate(value)
            evaluate(expr)
        except ValueError:
            return None

        def name(match: re.Match[str]) -> str:
            number = Fraction(match[0])
            if number in names:
                return names[number]
            if number not in literals:
                found = re.search(rf"(?<![\d.]){re.escape(match[0])}(?![\d]|\.\d)", question)
                at = found.start() if found else -1
                snippet = question[max(0, at - 30): at + len(match[0]) + 20].replace('"', "'").strip() if at >= 0 else match[0]
                literals[number] = f"n{len(literals) + 1}"
                # Numbered, so two numbers in one sentence are still two questions.
                ask = f'What is number {len(literals)} of the problem, in "...{snippet}..."?'
                plan.asks.append((literals[number], ask, show(number)))
            return literals[number]

        written = _NUMBER.sub(name, expr)
        plan.computes.append((f"v{k + 1}", written))
        names.setdefault(result, f"v{k + 1}")
        by_count = re.fullmatch(r"(v\d+|n\d+)\s*\*\s*(n\d+)", written)
        count = next((Fraction(v) for n, _, v in plan.asks if by_count and n == by_count[2]), None)
        if plan.loop is None and by_count and count is not None and count.denominator == 1 and 2 <= count <= 10:
            plan.loop, plan.loop_parts = k, (by_count[1], by_count[2])
    gold = Fraction(final) if _NUMBER.fullmatch(final) else None
    plan.answer = names.get(gold, plan.computes[-1][0] if plan.computes else "") if gold is not None else ""
    return plan if plan.computes and plan.answer else None


def graph_chart(plan: Plan, rng: random.Random, wrong_branch: bool, off_by_one: int, broken: str | None) -> str:
    # Segments in order: (entry id, nodes, the nodes that lead on to the next segment's entry).
    segments: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
    for n, q, _ in plan.asks:
        node = {"id": f"ask_{n}", "kind": "ask", "question": q, "store": n}
        segments.append((node["id"], [node], [node]))
    for k, (name, expr) in enumerate(plan.computes):
        if k == plan.loop:
            add, count = plan.loop_parts
            times = count if not off_by_one else f"{count} + ({off_by_one})"
            start = {"id": f"start_{name}", "kind": "compute", "expr": "0", "store": name, "next": f"loop_{name}"}
            loop = {"id": f"loop_{name}", "kind": "loop", "times": times, "body": f"add_{name}"}
            body = {"id": f"add_{name}", "kind": "compute", "expr": f"{name} + {add}", "store": name, "next": loop["id"]}
            segments.append((start["id"], [start, loop, body], [loop]))
        elif k == 0 and plan.asks:
            first = plan.asks[0][0]
            right = {"id": f"calc_{name}", "kind": "compute", "expr": expr, "store": name}
            other = {"id": f"other_{name}", "kind": "compute", "expr": f"({expr}) + {first}", "store": name}
            check = {"id": "check", "kind": "decide", "condition": f"{first} {'<' if wrong_branch else '>'} 0",
                     "yes": right["id"], "no": other["id"]}
            segments.append((check["id"], [check, right, other], [right, other]))
        else:
            node = {"id": f"calc_{name}", "kind": "compute", "expr": expr, "store": name}
            segments.append((node["id"], [node], [node]))
    segments.append(("done", [{"id": "done", "kind": "answer", "expr": plan.answer}], []))
    for (_, _, leads), (entry, _, _) in zip(segments, segments[1:]):
        for node in leads:
            node["next"] = entry
    nodes = [node for _, group, _ in segments for node in group]
    if broken:
        nodes = _break(nodes, broken, rng)
    text = json.dumps({"nodes": nodes})
    return text[: len(text) // 2] if broken == "truncated" else text


def _break(nodes: list[dict[str, Any]], how: str, rng: random.Random) -> list[dict[str, Any]]:
    steps = [n for n in nodes if n["kind"] in ("ask", "compute")]
    victim = rng.choice(steps) if steps else nodes[0]
    if how == "dangling":
        victim["next"] = "nowhere"
    elif how == "cycle":
        victim["next"] = victim["id"]
    elif how == "undefined":
        if victim["kind"] == "ask":
            victim = next((n for n in nodes if n["kind"] == "compute"), victim)
        victim.update(kind="compute", expr="total_cost * 2")
    elif how == "no-answer":
        nodes = [n for n in nodes if n["kind"] != "answer"]
    elif how == "endless":
        loop = {"id": "again", "kind": "loop", "while": "1 > 0", "body": victim["id"], "next": victim.get("next", "done")}
        victim["next"] = "again"
        nodes.insert(nodes.index(victim) + 1, loop)
    return nodes


def program_text(plan: Plan, rng: random.Random, wrong_branch: bool, off_by_one: int, broken: str | None, helper: bool) -> str:
    lines = [f"    {n} = ask({q!r})" for n, q, _ in plan.asks]
    called = rng.randrange(len(plan.computes)) if helper else None
    for k, (name, expr) in enumerate(plan.computes):
        formatted = re.sub(r"\b([nv]\d+)\b", r"{\1}", expr)
        if k == plan.loop:
            add, count = plan.loop_parts
            rounds = count if not off_by_one else f"{count} + ({off_by_one})"
            lines += [f"    {name} = 0", f"    for _ in range(int({rounds})):", f'        {name} = calc(f"{{{name}}} + {{{add}}}")']
        elif k == called:
            args = ", ".join(sorted(set(re.findall(r"\b[nv]\d+\b", expr))))
            lines.append(f"    {name} = step_{k + 1}({args})")
        elif k == 0 and plan.asks:
            first = plan.asks[0][0]
            lines += [f"    if {first} {'<' if wrong_branch else '>'} 0:", f'        {name} = calc(f"{formatted}")',
                      "    else:", f'        {name} = calc(f"({formatted}) + {{{first}}}")']
        else:
            lines.append(f'    {name} = calc(f"{formatted}")')
    lines.append(f"    return {plan.answer}")
    if broken == "truncated":
        lines = lines[: max(1, len(lines) // 2)] + ["    return ("]
    elif broken in ("cycle", "endless"):
        lines.insert(len(plan.asks), "    while True:\n        n1 = ask(\"What is the first number again?\")")
    elif broken in ("undefined", "dangling", "no-answer"):
        lines[-1] = "    return total_cost * 2"
    return "\n".join(lines)


class ChartSimulator:
    """`respond` writes charts and answers sub-questions; StepSimulator answers the rest."""

    def __init__(self, problems: Sequence[Problem | tuple[str, str]], *, wrong_branch_rate: float = 0.05,
                 off_by_one_rate: float = 0.05, malformed_rate: float = 0.1, ask_slip_rate: float = 0.02,
                 helper_rate: float = 0.2, seed: int = 0, **step_options: Any) -> None:
        rates = {"wrong_branch_rate": wrong_branch_rate, "off_by_one_rate": off_by_one_rate, "malformed_rate": malformed_rate,
                 "ask_slip_rate": ask_slip_rate, "helper_rate": helper_rate}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {rate}")
        self.rates, self.seed = rates, seed
        self.steps = StepSimulator(problems, seed=seed, **step_options)
        self.plans = {q: plan_for(q, [c for s in p.steps for c in s.calcs], p.answer) for q, p in self.steps.problems.items()}

    def usable(self, question: str) -> bool:
        """Whether the chart written without slips gives the gold answer (a few annotations
        do not chain, e.g. a number that is both stated and computed)."""
        plan, gold = self.plans.get(question), self.steps.problems[question].answer
        if plan is None:
            return False
        values = {n: v for n, _, v in plan.asks}
        try:
            for name, expr in plan.computes:
                values[name] = show(evaluate(re.sub(r"\b[nv]\d+\b", lambda m: f"({values[m[0]]})", expr)))
        except (ValueError, KeyError):
            return False
        return _NUMBER.fullmatch(gold) is not None and evaluate(values[plan.answer]) == Fraction(gold)

    def respond(self, body: dict[str, Any], index: int) -> str:
        text = _request_text(body)
        kind = "graph" if GRAPH_PROMPT in text else "program" if PROGRAM_PROMPT in text else \
            "ask" if _SUB.search(text) else "helper" if _HELPER.search(text) else None
        if kind is None:
            return self.steps.respond(body, index)
        problem, _ = self.steps.find(text)
        plan = self.plans[problem.question]
        rng = random.Random(_digest(self.seed, problem.question, body.get("seed"), index, kind, text[-300:]))
        if kind in ("ask", "helper"):
            return f"The answer is {self._value(plan, text, kind, rng)}."
        r = self.rates
        broken = rng.choice(MALFORMED) if plan is None or rng.random() < r["malformed_rate"] else None
        wrong = rng.random() < r["wrong_branch_rate"]
        off = rng.choice((-1, 1)) if rng.random() < r["off_by_one_rate"] else 0
        if plan is None:
            return '{"nodes": [' if kind == "graph" else "    return ("
        if kind == "graph":
            return graph_chart(plan, rng, wrong, off, broken)
        return program_text(plan, rng, wrong, off, broken, rng.random() < r["helper_rate"])

    def _value(self, plan: Plan | None, text: str, kind: str, rng: random.Random) -> str:
        true: Fraction | None = None
        if plan is not None and kind == "ask":
            said = plan.value_of(_SUB.findall(text)[-1].strip())
            true = Fraction(said) if said is not None else None
        elif plan is not None:
            name, args = _HELPER.findall(text)[-1]
            k = int(name.removeprefix("step_")) - 1 if name.startswith("step_") and name[5:].isdigit() else -1
            state = dict(re.findall(r"\b([nv]\d+) = (-?[\d.]+)", text))
            if 0 <= k < len(plan.computes):
                try:
                    true = evaluate(re.sub(r"\b[nv]\d+\b", lambda m: state.get(m[0], "0"), plan.computes[k][1]))
                except ValueError:
                    true = None
        if true is None:  # a question it cannot place: a guess
            return str(rng.randint(1, 100))
        return show(_wrong_value(true, rng) if rng.random() < self.rates["ask_slip_rate"] else true)
