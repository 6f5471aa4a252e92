"""What the ReAct tests share: a question, stand-in tools that record their calls, and a scripted
model that answers by how many steps its transcript already holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reasoner.tools.base import ToolRegistry, tool
from reasoner.types import GenerationRequest

QUESTION = "Sam has 3 boxes of 4 apples. He eats 2. How many apples are left?"


def make_tools(calls: list[str]) -> ToolRegistry:
    """Stand-ins for the real calculator and python tools, recording every call."""

    @tool()
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        calls.append(expression)
        return str(eval(expression, {"__builtins__": {}}))  # test input only

    @tool()
    def python(code: str) -> str:
        """Run a Python program and show what it prints."""
        calls.append(code)
        return "ran"

    return ToolRegistry([calculator, python])


def steps_taken(request: GenerationRequest) -> int:
    """How many steps the transcript the model is shown already holds."""
    return (request.prefill or "").count("Observation:")


def script(replies: Sequence[str]) -> Callable[[GenerationRequest, int], str]:
    """A model that gives reply i when its transcript holds i steps (the last reply repeats)."""
    return lambda request, _i: replies[min(steps_taken(request), len(replies) - 1)]
