"""PAL: programs from a scripted model run in the real sandbox; failures fall back to few-shot CoT."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from pydantic import ValidationError

from reasoner.testing.scripted import ScriptedBackend
from reasoner.strategy import get_strategy
from reasoner.types import Solution
from reasoner.strategies.pal import PAL, PREFILL, number_from, program_from

QUESTION = "Sam has 3 boxes of 4 apples. He eats 2. How many apples are left?"
COT = " He has 3 * 4 = 12 apples and eats 2, so 12 - 2 = 10.\nThe answer is 10."


def solve(program: str | list[str], strategy: Any = None, **options: Any) -> tuple[Solution, ScriptedBackend]:
    backend = ScriptedBackend([(r"# solution in Python:\ndef solution\(\):\n$", program), (r"A:$", COT)])
    strategy = strategy or PAL(**options)
    return asyncio.run(strategy.solve(QUESTION, backend)), backend


def node_ids(solution: Solution) -> list[str]:
    return [n["id"] for n in solution.trace["nodes"]]


def test_the_program_runs_and_its_return_value_is_the_answer() -> None:
    solution, backend = solve("    apples = 3 * 4\n    eaten = 2\n    return apples - eaten\n")
    assert solution.error is None and solution.answer == "10"
    assert node_ids(solution) == ["pal", "program", "run"]
    kinds = [n["kind"] for n in solution.trace["nodes"]]
    assert kinds == ["function", "model", "tool"]  # the sandbox run is a tool node
    assert solution.trace["nodes"][2]["output"]["ok"] is True
    (request,) = backend.requests
    assert request.prefill == PREFILL and "\nQ:" in request.stop
    assert request.messages[0].content.count("def solution():") == 4  # the worked examples
    assert solution.details["program"].startswith("def solution():\n    apples = 3 * 4")
    assert "fallback" not in solution.details
    assert solution.text.endswith("The answer is 10.")


def test_a_float_result_is_normalised() -> None:
    solution, _ = solve("    return 0.1 + 0.2 + 12 / 4\n")
    assert solution.answer == "3.3"


@pytest.mark.parametrize(
    "program,options,reason",
    [
        ("    return 12 / 0\n", {}, "ZeroDivisionError"),
        ("    while True:\n        pass\n", {"timeout_s": 0.5}, "timed out"),
        ("    return 'many apples'\n", {}, "no number in the result 'many apples'"),
        ("    return None\n", {}, "no number in the result None"),
        ("    return (\n", {}, "SyntaxError"),
    ],
)
def test_a_failed_program_falls_back_to_few_shot_cot(program: str, options: dict[str, Any], reason: str) -> None:
    solution, backend = solve(program, **options)
    assert solution.error is None and solution.answer == "10"  # from the chain of thought
    assert reason in solution.details["fallback_reason"]
    assert solution.details["fallback"] == "few-shot-cot"
    assert solution.details["program"].startswith("def solution():")
    ids = node_ids(solution)
    assert ids == ["pal", "program", "run", "fallback/few-shot-cot", "fallback/reason"]
    run = next(n for n in solution.trace["nodes"] if n["id"] == "run")
    assert run["output"]["ok"] is (reason.startswith("no number"))  # the failure is in the trace
    assert len(backend.requests) == 2


def test_a_program_cut_off_at_its_token_budget_falls_back_saying_so() -> None:
    backend = ScriptedBackend([(r"def solution\(\):\n$", "    apples = 3 * 4\n    return (apples"), (r"A:$", COT)], cut_off=r"def solution\(\):\n$")
    solution = asyncio.run(PAL(max_tokens=12).solve(QUESTION, backend))
    assert solution.answer == "10" and solution.details["fallback"] == "few-shot-cot"
    assert solution.details["fallback_reason"].startswith("the program was cut off at max_tokens (12 tokens): the program failed: ")


def test_no_fallback_means_no_answer() -> None:
    solution, backend = solve("    return 1 / 0\n", fallback="none")
    assert solution.answer is None and "ZeroDivisionError" in solution.details["fallback_reason"]
    assert solution.details["fallback"] == "none"
    assert len(backend.requests) == 1


def test_the_fallback_must_be_another_strategy_or_none() -> None:
    assert PAL(fallback="zero-shot-cot").fallback == "zero-shot-cot"
    with pytest.raises(ValidationError, match="unknown fallback strategy 'pal'"):
        PAL(fallback="pal")  # would fall back to itself
    with pytest.raises(ValidationError, match="unknown fallback strategy 'magic'; use one of: ") as raised:
        PAL(fallback="magic")
    offered = str(raised.value).split("use one of: ")[1].split(" [")[0].split(", ")
    assert {"few-shot-cot", "none"} <= set(offered) and "pal" not in offered


def test_a_body_without_indentation_is_indented() -> None:
    assert program_from("x = 3\nreturn x\n") == "def solution():\n    x = 3\n    return x"
    solution, _ = solve("total = 3 * 4 - 2\nreturn total\n")
    assert solution.answer == "10"


def test_a_chat_model_that_writes_the_whole_function_in_markdown() -> None:
    reply = "Here is the program:\n```python\nimport math\n\ndef solution():\n    return math.floor(10.5)\n```\n"
    assert program_from(reply) == "import math\n\ndef solution():\n    return math.floor(10.5)"
    solution, _ = solve(reply)
    assert solution.answer == "10"


def test_number_from() -> None:
    assert number_from(18.0) == "18"
    assert number_from(0.1 + 0.2) == "0.3"
    assert number_from(-7) == "-7"
    assert number_from(" 1,200 ") == "1200"
    assert number_from("The answer is 5 apples") == "5"
    assert number_from(True) is None and number_from(None) is None and number_from([1]) is None
    assert number_from(math.nan) is None and number_from(math.inf) is None


def test_pal_is_an_inner_strategy_of_self_consistency() -> None:
    programs = ["    return 3 * 4 - 2\n", "    return 12 - 2\n", "    return 3 * 4\n", "    return 1 / 0\n"]
    strategy = get_strategy("self-consistency", inner="pal", samples=4, temperature=0.7, seed=1)
    solution, backend = solve(programs, strategy=strategy)
    assert solution.error is None and solution.answer == "10"
    # The four programs are one request with n=4 (the prompt is prefilled once).
    program_requests = [r for r in backend.requests if r.prefill == PREFILL]
    assert len(program_requests) == 1 and program_requests[0].n == 4
    runs = [n for n in solution.trace["nodes"] if n["label"] == "run"]
    assert len(runs) == 4
    assert solution.details["votes"] == {"10": 3, "12": 1}  # the crashed one fell back to CoT: 10


@pytest.mark.slow
async def test_pal_end_to_end_on_the_embedded_model(local_backend) -> None:  # type: ignore[no-untyped-def]
    strategy = PAL(max_tokens=64, fallback="none")
    solution = await strategy.solve("Tom has 3 bags of 5 marbles. How many marbles does he have?", local_backend)
    assert solution.error is None and solution.usage.calls == 1
    assert solution.details["program"].startswith(("def solution", "import", "from"))
    run = next(n for n in solution.trace["nodes"] if n["id"] == "run")
    assert run["kind"] == "tool" and run["status"] == "done"
    # Either the program gave a number, or why it did not is recorded.
    assert (solution.answer is None) == ("fallback" in solution.details)
