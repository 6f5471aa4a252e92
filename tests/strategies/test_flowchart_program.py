"""Flowchart, program form: a scripted model's programs run in the real sandbox, calling back to the
host for ask() / calc() / undefined helpers; hostile programs end in a fallback, the host untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from reasoner.strategies.flowchart import Flowchart
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import Solution

QUESTION = "A colony has 3 bacteria and doubles every week. How many bacteria are there after 5 weeks?"
COT = " 3 doubled 5 times is 96.\nThe answer is 96."
LOOP = ('    count = ask("How many bacteria at the start?")\n    for week in range(5):\n'
        '        count = calc(f"{count} * 2")\n    return count\n')


def solve(program: str, **options: Any) -> tuple[Solution, ScriptedBackend]:
    backend = ScriptedBackend([(r"short Python function", program), (r"Sub-question: How many bacteria", "The answer is 3."),
                               (r"calls weeks_in\(", "The answer is 5."), (r"A:$", COT)])
    strategy = Flowchart(form="program", **options)
    return asyncio.run(strategy.solve(QUESTION, backend)), backend


def labels(solution: Solution, start: str) -> list[dict[str, Any]]:
    return [n for n in solution.trace["nodes"] if n["label"].startswith(start)]


def test_a_loop_in_the_program_is_repeated_calculator_nodes_on_one_line() -> None:
    solution, backend = solve(LOOP)
    assert solution.error is None and solution.answer == "96", solution.details
    calcs = labels(solution, "calc line 4")
    assert [n["output"]["output"] for n in calcs] == ["6", "12", "24", "48", "96"]
    assert len(labels(solution, "ask line 2")) == 1
    assert "fallback" not in solution.details and solution.details["steps"] == 6


def test_a_branch_runs_one_side_only() -> None:
    program = ('    count = ask("How many bacteria at the start?")\n    if count > 10:\n        return calc(f"{count} * 100")\n'
               '    return calc(f"{count} * 32")\n')
    solution, _ = solve(program)
    assert solution.answer == "96"
    assert labels(solution, "calc line 5") and not labels(solution, "calc line 4")


def test_an_undefined_helper_is_answered_by_the_model_given_the_program_state() -> None:
    program = ('    count = ask("How many bacteria at the start?")\n    weeks = weeks_in("five weeks")\n'
               '    for _ in range(weeks):\n        count = calc(f"{count} * 2")\n    return count\n')
    solution, backend = solve(program)
    assert solution.answer == "96"
    (helper,) = labels(solution, "helper weeks_in")
    prompt = next(r for r in backend.requests if "helper it never defined" in r.messages[0].content).messages[0].content
    assert "weeks_in('five weeks')" in prompt and "count = 3" in prompt


@pytest.mark.parametrize("use", ["count * weeks", "calc(f'{count} * {weeks}')", "[count for _ in range(weeks)][-1]"])
def test_an_undefined_name_used_as_a_value_falls_back_naming_it(use: str) -> None:
    # The model answers calls of undefined helpers; a missing variable is the program's error.
    solution, backend = solve(f'    count = ask("How many bacteria at the start?")\n    return {use}\n')
    assert solution.answer == "96" and solution.details["fallback"] == "few-shot-cot"
    assert solution.details["fallback_reason"].endswith("NameError: name 'weeks' is not defined")
    assert solution.details["fallback_reason"].startswith("line 3: return ")
    assert not any("never defined" in r.as_text() for r in backend.requests)


def test_an_error_names_the_programs_own_line() -> None:
    solution, _ = solve('    count = ask("How many bacteria at the start?")\n    share = count / 0\n    return share\n')
    assert solution.details["fallback_reason"] == "line 3: share = count / 0\nZeroDivisionError: division by zero"


def test_a_program_cut_off_at_its_token_budget_falls_back_saying_so() -> None:
    backend = ScriptedBackend([(r"short Python function", LOOP[:60]), (r"A:$", COT)], cut_off=r"short Python function")
    solution = asyncio.run(Flowchart(form="program", chart_max_tokens=16).solve(QUESTION, backend))
    assert solution.answer == "96" and solution.details["fallback"] == "few-shot-cot"
    assert solution.details["fallback_reason"].startswith("the program was cut off at chart_max_tokens (16 tokens): line 3: for w\n")
    assert "SyntaxError" in solution.details["fallback_reason"]


def test_a_program_that_returns_nothing_says_so_on_its_run_node() -> None:
    solution, _ = solve("    count = 3\n")
    (run,) = labels(solution, "run")
    assert run["output"]["output"] == "solution() returned None"  # not the python tool's hint to print()
    assert solution.details["fallback_reason"] == "no number in the result None"


HOSTILE = {
    "endless loop": ("    while True:\n        pass\n", "timed out"),
    "endless asking": ('    while True:\n        ask("How many bacteria at the start?")\n', "step budget exceeded"),
    "deep recursion": ("    def down(n):\n        return down(n + 1)\n    return down(0)\n", "RecursionError"),
    "huge numbers": ('    return calc("9 ** 9 ** 9")\n', "too large"),
    "huge integer": ("    return 10 ** 10 ** 9\n", "timed out"),
    "callback flood": (("    import reasoner_host\n    for _ in range(10_000):\n        try:\n"
                        "            reasoner_host.call('x' * 10)\n        except Exception:\n            pass\n"), "more than 9 calls to the host"),
    "raw flood": ("    import js\n    for _ in range(100):\n        js.postMessage(js.JSON.parse('{\"kind\": \"call\", \"text\": \"x\"}'))\n    return 1\n",
                  "callback limit exceeded"),
    "oversized call": ("    return ask('x' * 100_000)\n", "callback limit exceeded"),
    "forged call": ("    import reasoner_host\n    return reasoner_host.call('{\"op\": \"exec\", \"code\": \"import os\"}')\n", "not a call the host answers"),
    "host file": ("    import js\n    return js.Deno.readTextFileSync('/etc/hostname')\n", "Requires read access"),
    "host command": ("    import js\n    return js.Deno.Command.new('touch', js.JSON.parse('{\"args\": [\"/tmp/x\"]}')).outputSync()\n",
                     "Requires run access"),
    "no solution": ("    return 1\ndel solution\n", "defines no solution()"),
    "syntax": ("    return (\n", "SyntaxError"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_program_is_contained_and_falls_back(case: str, tmp_path: Path) -> None:
    program, said = HOSTILE[case]
    solution, _ = solve(program.replace("/etc/hostname", str(tmp_path)), timeout_s=2.0, max_steps=8)
    assert solution.error is None and solution.answer == "96"  # from the chain of thought
    assert solution.details["fallback"] == "few-shot-cot"
    assert said in solution.details["fallback_reason"], solution.details["fallback_reason"]
    assert solution.details["steps"] <= 8


def test_the_host_is_untouched_by_a_program_that_tries_to_write_to_it(tmp_path: Path) -> None:
    target = tmp_path / "owned"
    program = f"    import js\n    js.Deno.writeTextFileSync({str(target)!r}, 'x')\n    return 1\n"
    solution, _ = solve(program)
    assert solution.details["fallback"] == "few-shot-cot" and "Requires write access" in solution.details["fallback_reason"]
    assert not target.exists()
