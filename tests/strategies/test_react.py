"""ReAct: the text protocol loop on a scripted model, native tool calls on the fake OpenAI server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from reasoner.backends.http import OpenAIBackend
from reasoner.testing.scripted import ScriptedBackend
from reasoner.testing.fake_openai import FakeOpenAIServer, FakeToolCalls
from reasoner.strategy import get_strategy
from reasoner.types import GenerationRequest
from reasoner.strategies.react import ReAct, parse_text, repeats

from react_support import QUESTION, make_tools, script, steps_taken


def run(strategy: ReAct, replies: Sequence[str], final: str = " 0") -> tuple[Any, ScriptedBackend]:
    backend = ScriptedBackend([(r"give my final answer now\.\nAction: finish\[$", final), ("Sam has", script(replies))])
    return asyncio.run(strategy.solve(QUESTION, backend)), backend


def labels(solution: Any) -> list[str]:
    return [n["label"] for n in solution.trace["nodes"]]


def test_text_protocol_thought_action_observation_until_finish() -> None:
    calls: list[str] = []
    replies = [
        " He has 3 * 4 apples.\nAction: calculator[3 * 4]\n",
        " He had 12 and eats 2.\nAction: calculator[12 - 2]\n",
        " 10 apples are left.\nAction: finish[10]",
    ]
    solution, backend = run(ReAct(mode="text").with_tools(make_tools(calls)), replies)
    assert solution.error is None and solution.answer == "10"
    assert calls == ["3 * 4", "12 - 2"]
    # The loop's node, then one model call and one tool node (its output the observation) per step.
    assert labels(solution) == ["react"] + ["thought", "action"] * 3
    kinds = {n["label"]: n["kind"] for n in solution.trace["nodes"]}
    assert kinds == {"react": "function", "thought": "model", "action": "tool"}
    # Generation stops where an observation would start, so the model never writes one.
    assert all("Observation:" in r.stop for r in backend.requests)
    assert backend.requests[0].prefill == "Thought:"
    assert backend.requests[2].prefill.endswith("Action: calculator[12 - 2]\nObservation: 10\nThought:")
    assert "calculator[expression]" in backend.requests[0].messages[0].content
    details = solution.details
    assert details["stop_reason"] == "finish" and details["mode"] == "text"
    assert details["tools_used"] == ["calculator"]
    assert [s["observation"] for s in details["steps"]] == ["12", "10", ""]
    assert solution.text.endswith("Observation: 10\nThought: 10 apples are left.\nAction: finish[10]")


def test_auto_mode_uses_the_text_protocol_on_a_backend_without_tools() -> None:
    solution, backend = run(ReAct().with_tools(make_tools([])), [" 10.\nAction: finish[10]"])
    assert solution.answer == "10" and solution.details["mode"] == "text"
    assert backend.requests[0].tools is None


def test_an_invented_observation_is_ignored() -> None:
    # A backend that ignores stop sequences lets the model run on; its own observation is dropped.
    calls: list[str] = []
    replies = [" 3 * 4.\nAction: calculator[3 * 4]\nObservation: 99\nThought: so 97", " Done.\nAction: finish[10]"]
    solution, backend = run(ReAct(mode="text").with_tools(make_tools(calls)), replies)
    assert solution.details["steps"][0]["observation"] == "12"
    assert "99" not in backend.requests[1].prefill


@pytest.mark.parametrize(
    "bad,problem",
    [
        (" I will add them up.\n", "no `Action:` line"),
        (" Add.\nAction: calculator(3 + 4)\n", "is not of the form name[input]"),
        (" Look it up.\nAction: wikipedia[apples]\n", "there is no tool named 'wikipedia'"),
    ],
)
def test_a_malformed_action_becomes_an_observation_explaining_the_valid_forms(bad: str, problem: str) -> None:
    solution, backend = run(ReAct(mode="text").with_tools(make_tools([])), [bad, " 10.\nAction: finish[10]"])
    assert solution.answer == "10"
    observation = solution.details["steps"][0]["observation"]
    assert problem in observation
    assert "Action: tool[input]" in observation and "calculator, python" in observation and "finish[answer]" in observation
    assert f"Observation: {observation}\nThought:" in backend.requests[1].prefill
    assert solution.details["tools_used"] == []


@pytest.mark.parametrize(
    "said,answer",
    [("12 * 7", "84"), ("(3 + 4) * 2.5", "17.5"), ("3/4", "0.75"), ("-5", "-5"), ("84 apples", "84"), ("$1,250.", "1250")],
)
def test_a_finish_argument_that_is_a_sum_is_evaluated(said: str, answer: str) -> None:
    solution, _ = run(ReAct(mode="text").with_tools(make_tools([])), [f" Done.\nAction: finish[{said}]"])
    assert solution.answer == answer


def test_final_answer_line_is_read_as_finish() -> None:
    solution, _ = run(ReAct(mode="text").with_tools(make_tools([])), [" I know it.\nFinal Answer: 10 apples"])
    assert solution.answer == "10" and solution.details["stop_reason"] == "finish"


def test_the_same_action_twice_in_a_row_is_cut_off_and_the_answer_asked_for() -> None:
    calls: list[str] = []
    replies = [" Multiply.\nAction: calculator[3 * 4]\n", " Multiply again.\nAction: calculator[3*4]\n"]  # spaces aside, the same
    solution, backend = run(ReAct(mode="text").with_tools(make_tools(calls)), replies, final="10]")
    assert calls == ["3 * 4"]  # the repeat was not run
    assert solution.answer == "10" and solution.details["stop_reason"] == "repeated_action"
    assert "already ran calculator[3*4] in the previous step" in solution.details["steps"][1]["observation"]
    assert labels(solution)[-3:] == ["thought", "action", "final"]
    final = backend.requests[-1]
    assert final.prefill.endswith("I give my final answer now.\nAction: finish[") and final.stop == ("]", "\n")
    assert final.max_tokens == 32


def test_an_action_taken_three_times_in_all_is_cut_off() -> None:
    calls: list[str] = []
    replies = [f" Step.\nAction: calculator[{e}]\n" for e in ("3 * 4", "12 - 2", "3 * 4", "1 + 1", "3 * 4")]
    solution, _ = run(ReAct(mode="text").with_tools(make_tools(calls)), replies, final="10")
    assert calls == ["3 * 4", "12 - 2", "3 * 4", "1 + 1"]
    assert solution.details["stop_reason"] == "repeated_action"
    assert "2 times" in solution.details["steps"][-1]["observation"]


def test_repeats_rule() -> None:
    def step(expr: str) -> Any:
        return parse_text(f" x\nAction: calculator[{expr}]", ["calculator"])

    assert repeats([step("1+1")], step("1 + 1")) == 2  # spacing does not make an input new
    assert repeats([step("1+1")], step("1+2")) == 0
    assert repeats([step("1+1"), step("2")], step("1+1")) == 0
    assert repeats([step("1+1"), step("2"), step("1+1"), step("3")], step("1+1")) == 3


def test_the_step_limit_asks_for_the_final_answer() -> None:
    calls: list[str] = []
    replies = [f" Step.\nAction: calculator[{i} + 1]\n" for i in range(10)]
    solution, backend = run(ReAct(mode="text", max_steps=3).with_tools(make_tools(calls)), replies, final="42")
    assert len(calls) == 3 and solution.answer == "42"
    assert solution.details["stop_reason"] == "max_steps" and len(solution.details["steps"]) == 3
    assert labels(solution) == ["react"] + ["thought", "action"] * 3 + ["final"]
    assert "I have used all my steps" in backend.requests[-1].prefill


def test_a_live_listener_sees_each_step_as_it_happens() -> None:
    seen: list[tuple[str, str, Any]] = []
    backend = ScriptedBackend([("Sam has", script([" 3 * 4.\nAction: calculator[3 * 4]\n", " 10.\nAction: finish[10]"]))])
    strategy = ReAct(mode="text").with_tools(make_tools([]))
    asyncio.run(strategy.solve(QUESTION, backend, on_node=lambda e, n, a: seen.append((e, a["label"], a.get("output")))))
    done = [(label, out) for event, label, out in seen if event == "done"]
    assert [label for label, _ in done][:2] == ["thought", "action"]
    assert done[1][1]["tool"] == "calculator" and done[1][1]["output"] == "12"  # the observation


# -- native tool calls --------------------------------------------------------------------------


def native_responder(bodies: list[dict[str, Any]]) -> Callable[[dict[str, Any], int], Any]:
    def respond(body: dict[str, Any], index: int) -> Any:
        bodies.append(body)
        tool_turns = [m for m in body["messages"] if m["role"] == "tool"]
        if not tool_turns:
            return FakeToolCalls([("calculator", {"expression": "3 * 4 - 2"})], content="Work out what is left.")
        return FakeToolCalls([("finish", {"answer": tool_turns[-1]["content"]})])

    return respond


async def test_native_mode_uses_function_calls_and_tool_messages() -> None:
    bodies: list[dict[str, Any]] = []
    calls: list[str] = []
    with FakeOpenAIServer("m", responder=native_responder(bodies)) as server:
        backend = OpenAIBackend(server.base_url, "m", backoff_base=0.001)
        try:
            solution = await ReAct().with_tools(make_tools(calls)).solve(QUESTION, backend)  # auto → native
        finally:
            await backend.aclose()
    assert solution.error is None and solution.answer == "10"
    assert calls == ["3 * 4 - 2"]
    assert solution.details["mode"] == "native" and solution.details["stop_reason"] == "finish"
    assert labels(solution) == ["react"] + ["thought", "action"] * 2
    names = [t["function"]["name"] for t in bodies[0]["tools"]]
    assert names == ["calculator", "python", "finish"]
    assert "stop" not in bodies[0]
    assistant, result = bodies[1]["messages"][1:]
    assert assistant["role"] == "assistant" and assistant["content"] == "Work out what is left."
    call = assistant["tool_calls"][0]
    assert call["function"] == {"name": "calculator", "arguments": json.dumps({"expression": "3 * 4 - 2"})}
    assert result == {"role": "tool", "content": "10", "tool_call_id": call["id"]}


async def test_native_reply_without_a_call_is_the_final_answer() -> None:
    with FakeOpenAIServer("m", responder=lambda body, i: "There are 10 apples left.") as server:
        backend = OpenAIBackend(server.base_url, "m", backoff_base=0.001)
        try:
            solution = await ReAct(mode="native").with_tools(make_tools([])).solve(QUESTION, backend)
        finally:
            await backend.aclose()
    assert solution.answer == "10" and solution.details["steps"][0]["tool"] == "finish"


async def test_native_unknown_function_and_repeats_then_forced_finish() -> None:
    def respond(body: dict[str, Any], index: int) -> Any:
        turns = [m for m in body["messages"] if m["role"] == "tool"]
        if body["messages"][-1]["role"] == "user" and turns:
            return FakeToolCalls([("finish", {"answer": "10"})])
        if not turns:
            return FakeToolCalls([("wikipedia", {"query": "apples"})])
        return FakeToolCalls([("calculator", {"expression": "3 * 4 - 2"})])

    calls: list[str] = []
    with FakeOpenAIServer("m", responder=respond) as server:
        backend = OpenAIBackend(server.base_url, "m", backoff_base=0.001)
        try:
            solution = await ReAct(mode="native").with_tools(make_tools(calls)).solve(QUESTION, backend)
        finally:
            await backend.aclose()
    steps = solution.details["steps"]
    assert "no function named 'wikipedia'" in steps[0]["observation"]
    assert calls == ["3 * 4 - 2"] and "already ran" in steps[2]["observation"]
    assert solution.details["stop_reason"] == "repeated_action" and solution.answer == "10"
    assert labels(solution)[-3:] == ["thought", "action", "final"]


# -- options and the command line ----------------------------------------------------------------


def test_tools_option_accepts_comma_separated_names_of_built_in_tools() -> None:
    assert get_strategy("react", tools="calculator, search", docs="docs").tools == ["calculator", "search"]
    assert ReAct(tools=["python"]).tools == ["python"]
    with pytest.raises(ValidationError, match="unknown tools"):
        ReAct(tools="calculator,abacus")
    with pytest.raises(ValidationError, match="needs a folder of documents"):
        ReAct(tools="search")


def test_cli_solve_react_json_with_the_real_tools(capsys: pytest.CaptureFixture[str]) -> None:
    from reasoner.cli.main import main

    def respond(body: dict[str, Any], index: int) -> Any:
        if "Observation:" not in body["messages"][-1]["content"].split("Sam has")[-1]:
            return " Multiply, then subtract.\nAction: calculator[3 * 4 - 2]\n"
        return " 10 are left.\nAction: finish[10]"

    with FakeOpenAIServer("m", responder=respond) as server:
        code = main(["solve", QUESTION, "--strategy", "react", "--mode", "text", "--tools", "calculator,python", "--model", server.base_url, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["answer"] == "10" and out["strategy"] == "react"
    assert out["details"]["steps"][0]["observation"] == "10"
    assert out["details"]["tools_used"] == ["calculator"]


def test_real_default_tools_run_in_the_loop() -> None:
    replies = [
        " Multiply.\nAction: calculator[3 * 4]\n",
        " Check with a program.\nAction: python[print(3 * 4 - 2)]\n",
        " 10.\nAction: finish[10]",
    ]
    solution, _ = run(ReAct(mode="text"), replies)
    observations = [s["observation"] for s in solution.details["steps"]]
    assert observations[0].strip() in ("12", "12.0") and observations[1].strip() == "10"
    assert solution.details["tools_used"] == ["calculator", "python"]


@pytest.mark.slow
async def test_react_end_to_end_on_the_embedded_model(local_backend) -> None:  # type: ignore[no-untyped-def]
    strategy = ReAct(max_steps=2, max_tokens=48, answer_max_tokens=8)
    solution = await strategy.solve("Tom has 3 bags of 5 marbles. How many marbles does he have?", local_backend)
    assert solution.error is None
    # The embedded backend has no function calling but holds output to a JSON schema.
    assert solution.details["mode"] == "json"
    assert 1 <= len(solution.details["steps"]) <= 2
    assert solution.details["stop_reason"] in ("finish", "max_steps", "repeated_action")
    assert set(labels(solution)) <= {"react", "thought", "action", "final"}


def test_react_is_an_inner_strategy_of_self_consistency() -> None:
    first = [" 10.\nAction: finish[10]", " Work it out.\nAction: calculator[3 * 4 - 2]\n", " 7.\nAction: finish[7]"]

    def reply(request: GenerationRequest, i: int) -> str:
        return first[i % 3] if steps_taken(request) == 0 else " 10.\nAction: finish[10]"

    backend = ScriptedBackend([("Sam has", reply)])
    strategy = get_strategy("self-consistency", inner="react", samples=3, temperature=0.7, seed=3)
    solution = asyncio.run(strategy.solve(QUESTION, backend))
    assert solution.answer == "10" and solution.details["votes"] == {"10": 2, "7": 1}
    assert backend.requests[0].n == 3  # the copies' first thoughts are one request
    assert len(backend.requests) == 2


def test_a_six_step_trace_renders_as_a_sequence_within_80_columns() -> None:
    from rich.console import Console

    from reasoner.trace import render_tree

    replies = [f" Add one more.\nAction: calculator[{i} + 1]\n" for i in range(6)]
    solution, _ = run(ReAct(mode="text", max_steps=6).with_tools(make_tools([])), replies, final="6")
    console = Console(record=True, width=80)
    console.print(render_tree(solution.trace, title="calls"))
    lines = console.export_text().splitlines()
    assert len(lines) <= len(solution.trace["nodes"]) + 1  # one line per step, none wrapped
    assert all(len(line) <= 80 for line in lines)
    # The observations read in the order they were made.
    shown = [next(n for n, line in enumerate(lines) if f"calculator[{k} + 1] → {k + 1}" in line) for k in range(6)]
    assert shown == sorted(shown)
    # However many steps, they sit at one depth: the loop's, inside the tree's root.
    depth = {len(line) - len(line.lstrip(" │├└─")) for line in lines if "calculator[" in line}
    assert len(depth) == 1 and depth.pop() <= 8
