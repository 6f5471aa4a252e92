"""DAG planning: a scripted model plans, the engine answers independent sub-questions at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from reasoner.backends.errors import BackendError
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import GenerationRequest, Solution
from reasoner.strategies.plan_dag import Plan, PlanDAG, parse_plan
from reasoner.tools.base import ToolRegistry
from reasoner.tools.calculator import calculator

QUESTION = "Sam has 3 boxes of 4 apples and 2 bags of 5 pears. He eats 2 pieces. How many pieces of fruit are left?"
PLAN = {
    "steps": [
        {"id": "apples", "question": "How many apples does Sam have?", "depends_on": []},
        {"id": "pears", "question": "How many pears does Sam have?", "depends_on": []},
        {"id": "left", "question": "How many pieces of fruit are left?", "depends_on": ["apples", "pears"]},
    ]
}
CYCLE = {
    "steps": [
        {"id": "a", "question": "How many apples?", "depends_on": ["b"]},
        {"id": "b", "question": "How many pears?", "depends_on": ["a"]},
    ]
}
ANSWERS = [
    (r"Now answer only this: How many apples", " 3 boxes of 4 is 3 * 4 = 12.\nThe answer is 12."),
    (r"Now answer only this: How many pears", " 2 bags of 5 is 2 * 5 = 10.\nThe answer is 10."),
    (r"Now answer only this: How many pieces", " 12 + 10 - 2 = 20.\nThe answer is 20."),
    (r"Using these results", " 12 + 10 = 22 pieces, minus the 2 he eats is 20. The answer is 20."),
    (r"^Q: .*\nA:$", " 12 + 10 - 2 = 20.\nThe answer is 20."),  # the fallback's few-shot CoT
]


def solve(plans: list[str], strategy: PlanDAG | None = None, delay_s: float = 0.0) -> tuple[Solution, ScriptedBackend]:
    rules: list[Any] = [(r"cannot be followed", plans[-1]), (r"Plan:$", plans[0])]
    backend = ScriptedBackend(
        [*rules, *ANSWERS, (r"Expression:$", lambda request, i: " 3 * 4" if "apples does" in request.as_text()[-80:] else " 2 * 5")],
        delay_s=delay_s,
    )
    return asyncio.run((strategy or PlanDAG()).solve(QUESTION, backend)), backend


def nodes(solution: Solution) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in solution.trace["nodes"]}


def edges(solution: Solution) -> set[tuple[str, str]]:
    """The data dependencies (not a strategy's node waiting for its calls)."""
    return {(e["source"], e["target"]) for e in solution.trace["edges"] if not e.get("waited")}


def trace_ids(solution: Solution) -> list[str]:
    return [n["id"] for n in solution.trace["nodes"]]


def test_independent_steps_run_concurrently_and_the_final_call_sees_every_answer() -> None:
    solution, backend = solve([json.dumps(PLAN)], delay_s=0.2)
    assert solution.error is None and solution.answer == "20"
    assert backend.peak_in_flight == 2  # the apples and the pears at once
    trace = nodes(solution)
    assert {"plan-dag", "plan", "step1/few-shot-cot", "step2/few-shot-cot", "step3/few-shot-cot", "final"} <= set(trace)
    first, second = trace["step1/reason"], trace["step2/reason"]
    assert abs(first["started_s"] - second["started_s"]) < 0.1
    assert trace["step3/reason"]["started_s"] >= max(first["ended_s"], second["ended_s"])
    # The trace shows the plan: each step after the steps it depends on, the final call after all.
    after = edges(solution)
    assert {("plan", "step1/few-shot-cot"), ("plan", "step2/few-shot-cot")} <= after
    assert {("step1/few-shot-cot", "step3/few-shot-cot"), ("step2/few-shot-cot", "step3/few-shot-cot")} <= after
    assert ("step1/few-shot-cot", "step2/few-shot-cot") not in after and ("plan", "step3/few-shot-cot") not in after
    assert {(f"step{i}/few-shot-cot", "final") for i in (1, 2, 3)} <= after
    # The plan request carries the schema; the dependent step's prompt carries its dependencies' answers.
    plan_request = backend.requests[0]
    assert plan_request.json_schema == Plan.model_json_schema()
    step3 = next(r for r in backend.requests if "How many pieces of fruit are left?\nA:" in r.as_text())
    assert "We know: How many apples does Sam have? 12." in step3.as_text()
    assert "We know: How many pears does Sam have? 10." in step3.as_text()
    final = backend.requests[-1].as_text()
    assert "- How many apples does Sam have? 12" in final and "- How many pieces of fruit are left? 20" in final
    details = solution.details
    assert details["plan"] == PLAN["steps"] and details["answers"] == {"apples": "12", "pears": "10", "left": "20"}
    assert details["repaired"] is False and "fallback" not in details
    assert len(backend.requests) == 5  # plan, three steps, final


def test_a_failed_step_fails_the_run_and_its_dependants_never_ask() -> None:
    def fail(request: GenerationRequest, _i: int) -> str:
        raise BackendError("the server went away")

    backend = ScriptedBackend([(r"Plan:$", json.dumps(PLAN)), (r"Now answer only this: How many pears", fail), *ANSWERS])
    solution = asyncio.run(PlanDAG().solve(QUESTION, backend))
    assert solution.answer is None and "the server went away" in (solution.error or "")
    assert not any("How many pieces of fruit are left?\nA:" in r.as_text() for r in backend.requests)
    assert nodes(solution)["step2/reason"]["status"] == "failed"
    assert "final" not in nodes(solution)


def test_a_cyclic_plan_is_repaired_once() -> None:
    solution, backend = solve([json.dumps(CYCLE), "Here it is: " + json.dumps(PLAN) + " Good luck!"])
    assert solution.error is None and solution.answer == "20"
    assert solution.details["repaired"] is True
    (error,) = solution.details["plan_errors"]
    assert "cycle" in error and "a -> b -> a" in error
    repair = next(r for r in backend.requests if "cannot be followed" in r.as_text())
    assert error in repair.as_text() and json.dumps(CYCLE) in repair.as_text()
    assert trace_ids(solution)[:3] == ["plan-dag", "plan", "repair"] and "step1/few-shot-cot" in nodes(solution)


def test_a_second_bad_plan_falls_back_to_few_shot_cot() -> None:
    solution, backend = solve([json.dumps(CYCLE), "I cannot plan this."])
    assert solution.error is None and solution.answer == "20"
    details = solution.details
    assert details["fallback"] == "few-shot-cot" and details["repaired"] is True
    assert details["fallback_reason"] == "no valid plan after one repair"
    assert "cycle" in details["plan_errors"][0] and "no JSON" in details["plan_errors"][1]
    assert trace_ids(solution) == ["plan-dag", "plan", "repair", "fallback/few-shot-cot", "fallback/reason"]
    assert not any(n.startswith("step") for n in nodes(solution))
    assert len(backend.requests) == 3  # plan, repair, fallback


def test_calculator_inner_evaluates_an_expression_per_step() -> None:
    strategy = PlanDAG(inner="calculator").with_tools(ToolRegistry([calculator]))
    solution, backend = solve([json.dumps(PLAN)], strategy=strategy)
    trace = nodes(solution)
    assert trace["step1/expression"]["kind"] == "model" and trace["step1/calculate"]["kind"] == "tool"
    assert trace["step1/calculate"]["output"]["output"] == "12"
    assert {("step1/expression", "step1/calculate"), ("step1/calculate", "step3/expression")} <= edges(solution)
    assert solution.details["answers"]["apples"] == "12" and solution.details["answers"]["pears"] == "10"
    expression_requests = [r for r in backend.requests if r.prefill == "Expression:"]
    assert len(expression_requests) == 3 and all(r.stop == ("\n",) for r in expression_requests)
    assert solution.answer == "20"


@pytest.mark.parametrize(
    "text,error",
    [
        ("no json here", "no JSON"),
        ('{"steps": []}', "non-empty"),
        ('{"steps": [{"id": "a", "question": "q", "depends_on": ["z"]}]}', "depends on 'z', which is not a step"),
        ('{"steps": [{"id": "a", "question": "q"}, {"id": "a", "question": "r"}]}', "'a' is used twice"),
        ('{"steps": [{"id": "a", "question": "q", "depends_on": ["a"]}]}', "cycle: a -> a"),
        ('{"steps": [{"id": "a"}]}', "question"),
        (json.dumps({"steps": [{"id": str(i), "question": "q"} for i in range(9)]}), "at most 8"),
    ],
)
def test_parse_plan_says_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(")):
        parse_plan(text, max_steps=8)


def test_parse_plan_is_lenient_about_wrapping_and_shapes() -> None:
    plan = parse_plan('Sure! ```json\n[{"id": 1, "question": "q1", "extra": 0}, {"id": 2, "question": "q2", "depends_on": [1]}]\n```', 8)
    assert [(s.id, s.depends_on) for s in plan.steps] == [("1", []), ("2", ["1"])]


def test_inner_must_be_a_strategy_or_the_calculator() -> None:
    assert PlanDAG(inner="zero-shot-cot").inner == "zero-shot-cot"
    with pytest.raises(ValidationError, match="unknown inner strategy"):
        PlanDAG(inner="magic")


@pytest.mark.slow
async def test_plan_dag_end_to_end_on_the_embedded_model(local_backend) -> None:  # type: ignore[no-untyped-def]
    strategy = PlanDAG(inner="calculator", plan_max_tokens=160, max_subquestions=3)
    solution = await strategy.solve("Tom has 3 bags of 5 marbles. How many marbles does he have?", local_backend)
    assert solution.error is None
    trace = nodes(solution)
    assert trace["plan"]["request"]["json_schema"]["title"] == "Plan"
    # The grammar-constrained plan parses (then every step ran the calculator), or the repair
    # and fallback are recorded.
    details = solution.details
    if "fallback" in details:
        assert len(details["plan_errors"]) == 2
    else:
        steps = len(details["plan"])
        assert all(trace[f"step{i}/calculate"]["kind"] == "tool" for i in range(1, steps + 1))
        assert set(details["answers"]) == {s["id"] for s in details["plan"]}
