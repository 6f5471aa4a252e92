"""ReAct's JSON protocol: on a backend that holds output to a schema, each step is a JSON object
(thought, action, input) and the final answer a finish step."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from react_support import QUESTION, make_tools, script

from reasoner.strategies.react import ReAct
from reasoner.testing.scripted import ScriptedBackend


def run_json(strategy: ReAct, replies: Sequence[str], final: str = "0") -> tuple[Any, ScriptedBackend]:
    backend = ScriptedBackend([(r'final answer now\.", "action": "finish", "input": "$', final), ("Sam has", script(replies))])
    backend.supports_json_schema = True
    return asyncio.run(strategy.solve(QUESTION, backend)), backend


def test_auto_mode_holds_each_step_to_a_json_schema_where_the_backend_takes_one() -> None:
    calls: list[str] = []
    replies = [
        '{"thought": "He has 3 * 4 apples and eats 2.", "action": "calculator", "input": "3 * 4 - 2"}',
        '{"thought": "10 are left.", "action": "finish", "input": "10"}',
    ]
    solution, backend = run_json(ReAct().with_tools(make_tools(calls)), replies)
    assert solution.error is None and solution.answer == "10" and calls == ["3 * 4 - 2"]
    assert solution.details["mode"] == "json" and solution.details["stop_reason"] == "finish"
    first, second = backend.requests
    assert first.json_schema["properties"]["action"]["enum"] == ["calculator", "python", "finish"]
    assert first.tools is None and first.prefill == "Step: "
    assert '"action": "calculator", "input": "3 * 4 - 2"}\nObservation: 10\nStep: ' in second.prefill
    assert [s["action"] for s in solution.details["steps"]] == ["calculator[3 * 4 - 2]", "finish[10]"]
    assert solution.text.endswith('"action": "finish", "input": "10"}')


def test_a_json_step_cut_short_is_explained_in_the_observation() -> None:
    replies = ['{"thought": "Multiply the boxes by', '{"thought": "10.", "action": "finish", "input": "10"}']
    solution, backend = run_json(ReAct().with_tools(make_tools([])), replies)
    first = solution.details["steps"][0]
    assert first["tool"] is None and "not a JSON object with thought, action and input" in first["observation"]
    assert '"action": "<one of calculator, python, finish>"' in first["observation"]
    assert solution.answer == "10"


def test_json_mode_asks_for_the_final_answer_inside_a_finish_step() -> None:
    replies = [f'{{"thought": "Step.", "action": "calculator", "input": "{i} + 1"}}' for i in range(5)]
    solution, backend = run_json(ReAct(max_steps=2).with_tools(make_tools([])), replies, final="42")
    assert solution.answer == "42" and solution.details["stop_reason"] == "max_steps"
    final = backend.requests[-1]
    assert final.json_schema is None and final.stop == ('"', "\n") and final.max_tokens == 32
    assert final.prefill.endswith('I have used all my steps, so I give my final answer now.", "action": "finish", "input": "')


def test_parse_json_reads_a_step_and_rejects_unknown_actions() -> None:
    from reasoner.strategies.react_protocols import parse_json

    step = parse_json('{"thought": "t", "action": "Calculator", "input": "1 +\n1"}', ["calculator"])
    assert (step.tool, step.input, step.action) == ("calculator", "1 +\n1", "calculator[1 +\n1]")
    assert parse_json('{"thought": "t", "action": "abacus", "input": "1"}', ["calculator"]).tool is None


def test_a_json_step_is_capped_to_fit_its_token_budget() -> None:
    # Uncapped, the embedded model's thoughts ran past max_tokens and the step did not parse.
    from reasoner.strategies.react_protocols import step_schema

    for budget in (96, 256):
        props = step_schema(["calculator"], budget)["properties"]
        # A thought in words at 3 characters a token, an input of digits at 1, and 20 for the rest.
        assert props["thought"]["maxLength"] / 3 + props["input"]["maxLength"] + 20 <= budget
        assert props["input"]["maxLength"] >= 0.5 * (budget - 20)  # room for a program
