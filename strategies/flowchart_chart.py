"""A flowchart as data, and the small interpreter that walks it (the `graph` form of `flowchart`).

A chart is a list of nodes, each naming the next one; the flow starts at the first node:
* `ask`: a sub-question, answered by the model; its number is stored under `store`;
* `compute`: an arithmetic expression over stored names, evaluated by the calculator (never `eval`);
* `decide`: a comparison (`left <op> right`) that sends the flow to `yes` or `no`;
* `loop`: repeats the nodes from `body` (whose last node leads back to the loop) `times` times, or
  while the condition `while` holds; then goes on to `next`;
* `answer`: the value of `expr` is the answer.

The interpreter knows nothing about models: `Steps` says how an ask, a compute and a decision are
carried out (the strategy makes each a node of the run's graph). Everything that can go wrong (an
unparsable chart, an edge to nowhere, a cycle no decision can leave, an undefined name, an endless
loop, too many steps, no answer) is a `ChartError` with a readable reason, for the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reasoner.tools.calculator import CalculatorError, calculate

Kind = Literal["ask", "compute", "decide", "loop", "answer"]
_COMPARE = re.compile(r"(<=|>=|==|!=|<|>)")
_NAME = re.compile(r"\b[A-Za-z_][A-Za-z_0-9]*\b")
_BUILTIN = {"abs", "round", "min", "max", "sqrt", "floor", "ceil", "pi", "e", "of"}
_TESTS = {"<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
          ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


class ChartError(ValueError):
    """A chart that cannot be run to an answer, and why (the fallback's reason)."""


class Node(BaseModel):
    """One box of the chart. Which fields matter depends on `kind` (checked by `check`)."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)
    id: str = Field(description="a short unique name")
    kind: Kind
    question: str | None = Field(None, description="ask: the sub-question")
    expr: str | None = Field(None, description="compute / answer: arithmetic over stored names")
    store: str | None = Field(None, description="ask / compute: the name the value is stored under")
    condition: str | None = Field(None, description="decide: a comparison, e.g. 'total > 100'")
    yes: str | None = Field(None, description="decide: the next node when the condition holds")
    no: str | None = Field(None, description="decide: the next node otherwise")
    times: str | None = Field(None, description="loop: how many times to run the body")
    while_: str | None = Field(None, alias="while", description="loop: run the body while this holds")
    body: str | None = Field(None, description="loop: the first node of the body")
    next: str | None = Field(None, description="the node after this one (after a loop: when it is done)")


class Chart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    nodes: list[Node] = Field(min_length=1)


_NEEDS: dict[str, tuple[str, ...]] = {"ask": ("question", "store", "next"), "compute": ("expr", "store", "next"),
                                      "decide": ("condition", "yes", "no"), "loop": ("body", "next"), "answer": ("expr",)}


def parse_chart(data: Any, max_nodes: int = 40) -> Chart:
    """The chart in a decoded JSON value, checked to be runnable as far as can be seen before
    running it; ChartError says what is wrong."""
    nodes = data.get("nodes") if isinstance(data, dict) else data
    if not isinstance(nodes, list) or not nodes:
        raise ChartError('the chart needs a non-empty "nodes" list')
    if len(nodes) > max_nodes:
        raise ChartError(f"the chart has {len(nodes)} nodes; at most {max_nodes} are allowed")
    try:
        chart = Chart.model_validate({"nodes": nodes})
    except ValidationError as exc:
        raise ChartError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])) from None
    check(chart)
    return chart


def successors(node: Node) -> list[str]:
    return [s for s in (node.next, node.yes, node.no, node.body) if s]


def check(chart: Chart) -> None:
    ids = [n.id for n in chart.nodes]
    if twice := next((i for i in ids if ids.count(i) > 1), None):
        raise ChartError(f"node ids must be unique, and {twice!r} is used twice")
    for n in chart.nodes:
        if missing := [f for f in _NEEDS[n.kind] if not getattr(n, f)]:
            raise ChartError(f"{n.kind} node {n.id!r} needs {', '.join(missing)}")
        if n.kind == "loop" and bool(n.times) == bool(n.while_):
            raise ChartError(f"loop node {n.id!r} needs exactly one of 'times' and 'while'")
        if bad := next((s for s in successors(n) if s not in ids), None):
            raise ChartError(f"node {n.id!r} leads to {bad!r}, which is not a node")
    flow = nx.DiGraph((n.id, s) for n in chart.nodes for s in successors(n))
    flow.add_nodes_from(ids)
    # A cycle through no decide or loop node can never be left.
    choosers = {n.id for n in chart.nodes if n.kind in ("decide", "loop")}
    for cycle in nx.simple_cycles(flow.subgraph(set(ids) - choosers)):
        raise ChartError(f"the nodes {' -> '.join(cycle + cycle[:1])} form a cycle with no exit")
    reachable = nx.descendants(flow, ids[0]) | {ids[0]}
    if not any(n.kind == "answer" and n.id in reachable for n in chart.nodes):
        raise ChartError("no answer node can be reached from the first node")


def substitute(expr: str, values: dict[str, str], where: str) -> str:
    """`expr` with each stored name replaced by its value; an unknown name is a ChartError."""

    def value(match: re.Match[str]) -> str:
        name = match[0]
        if name in values:
            return f"({values[name]})"
        if name.lower() in _BUILTIN:
            return name
        raise ChartError(f"{where} uses {name!r}, which no earlier step stored (known: {', '.join(values) or 'none'})")

    return _NAME.sub(value, expr)


def evaluate(expr: str, values: dict[str, str], where: str) -> str:
    try:
        return calculate(substitute(expr, values, where))
    except CalculatorError as exc:
        raise ChartError(f"{where}: {expr!r} cannot be calculated: {exc}") from None


def holds(condition: str, values: dict[str, str], where: str) -> tuple[bool, str]:
    """Whether `left <op> right` holds, and the comparison with the values filled in."""
    parts = _COMPARE.split(condition, maxsplit=1)
    if len(parts) != 3:
        raise ChartError(f"{where}: the condition {condition!r} is not one comparison (<, >, <=, >=, ==, !=)")
    left, op, right = evaluate(parts[0], values, where), parts[1], evaluate(parts[2], values, where)
    try:
        return _TESTS[op](float(left), float(right)), f"{left} {op} {right}"
    except ValueError:
        raise ChartError(f"{where}: {condition!r} compares values that are not numbers") from None


@dataclass(frozen=True)
class Visit:
    """Where the flow is: the node, and the loops it is inside as (loop id, iteration from 1)."""

    node: Node
    loops: tuple[tuple[str, int], ...] = ()


class Steps(Protocol):
    """How the steps that need the world are carried out; each returns a number as text."""

    def ask(self, at: Visit, question: str, values: dict[str, str]) -> Awaitable[str]: ...
    def compute(self, at: Visit, expr: str, values: dict[str, str]) -> Awaitable[str]: ...
    def decide(self, at: Visit, condition: str, values: dict[str, str]) -> Awaitable[bool]: ...


@dataclass
class Walk:
    """The run of one chart: the values stored, the path taken, and the answer."""

    values: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)
    answer: str | None = None


async def run_chart(chart: Chart, steps: Steps, max_steps: int = 40, max_iterations: int = 20) -> Walk:
    """Follow the chart from its first node to an answer node, at most `max_steps` nodes and
    `max_iterations` rounds of any one loop."""
    by_id = {n.id: n for n in chart.nodes}
    walk, counts = Walk(), {}  # counts: each running loop's iterations so far
    active: list[str] = []  # the loops the flow is inside, outermost first
    current = chart.nodes[0]
    while True:
        if len(walk.path) >= max_steps:
            raise ChartError(f"no answer after {max_steps} steps (the step budget); path ends {' '.join(walk.path[-6:])}")
        walk.path.append(current.id)
        at = Visit(current, tuple((loop, counts[loop]) for loop in active))
        where = f"{current.kind} node {current.id!r}"
        if current.kind == "answer":
            walk.answer = evaluate(current.expr or "", walk.values, where)
            return walk
        if current.kind in ("ask", "compute"):
            do = steps.ask(at, current.question or "", walk.values) if current.kind == "ask" else steps.compute(at, current.expr or "", walk.values)
            walk.values[current.store or current.id] = await do
            current = by_id[current.next or ""]
        elif current.kind == "decide":
            current = by_id[(current.yes if await steps.decide(at, current.condition or "", walk.values) else current.no) or ""]
        else:  # a loop: entered afresh, or come back to from the end of its body
            if current.id not in counts:
                counts[current.id] = 0
                active.append(current.id)
                if current.times:
                    walk.values[f"{current.id}_times"] = evaluate(current.times, walk.values, where)
            done = counts[current.id]
            if current.times:
                more = done < float(walk.values[f"{current.id}_times"])
            else:
                more = await steps.decide(at, current.while_ or "", walk.values)
            if more and done >= max_iterations:
                raise ChartError(f"loop {current.id!r} ran {max_iterations} times (the cap) and would go on: an endless loop?")
            if more:
                counts[current.id] = done + 1
                walk.values[f"{current.id}_i"] = str(done + 1)
                current = by_id[current.body or ""]
            else:
                del counts[current.id]
                active.remove(current.id)
                current = by_id[current.next or ""]
