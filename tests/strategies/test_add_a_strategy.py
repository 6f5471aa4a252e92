"""The README's "Add a strategy" example, taken from the README itself, runs as it says."""

from __future__ import annotations

import re
import types
from pathlib import Path

import reasoner
from reasoner.testing.scripted import ScriptedBackend

README = Path(__file__).resolve().parents[2] / "README.md"


def example() -> str:
    text = README.read_text()
    section = text[text.index("### Add a strategy") :]
    return re.search(r"```python\n(# plan_and_solve\.py\n.*?)```", section, re.DOTALL)[1]  # type: ignore[index]


def load() -> types.ModuleType:
    module = types.ModuleType("plan_and_solve")
    exec(compile(example(), "README.md:plan_and_solve.py", "exec"), module.__dict__)  # noqa: S102 - our own README
    return module


def test_the_example_is_one_short_file_of_few_names() -> None:
    code = example()
    assert len(code.splitlines()) <= 20
    imported = {name.strip() for line in re.findall(r"^from \S+ import (.+)$", code, re.M) for name in line.split(",")}
    assert imported == {"Field", "Answer", "Run", "Strategy", "extract_answer"}


async def test_the_example_answers_in_one_call_with_its_options_and_the_inherited_ones() -> None:
    strategy = load().PlanAndSolve(temperature=0.3, style="Plan first.")
    backend = ScriptedBackend([(r"Q: What is 6 times 7\?\nA: Plan first\.", "Plan: multiply. 6 * 7 = 42. The answer is 42.")])
    solution = await reasoner.asolve("What is 6 times 7?", strategy=strategy, model=backend)
    assert solution.answer == "42" and solution.error is None
    (request,) = backend.requests
    assert request.temperature == 0.3 and request.stop == ("\nQ:",)
    assert [n["id"] for n in solution.trace["nodes"]] == ["plan-and-solve", "reason"]
    assert solution.usage.calls == 1
