"""Tools a strategy can give a model: a calculator, a Python sandbox and local document search.

Tools know nothing about models; `reasoner.tools.base` holds the Tool and ToolRegistry types.
"""

from __future__ import annotations

from pathlib import Path

from reasoner.tools.base import Tool, ToolRegistry, ToolResult, tool
from reasoner.tools.calculator import CalculatorError, calculate, calculator
from reasoner.tools.python_sandbox import python, run_python
from reasoner.tools.search import DocumentIndex, Passage, make_search_tool

TOOL_NAMES = ("calculator", "python", "search")

__all__ = [
    "TOOL_NAMES",
    "CalculatorError",
    "DocumentIndex",
    "Passage",
    "Tool",
    "ToolRegistry",
    "ToolResult",
    "calculate",
    "calculator",
    "default_tools",
    "make_search_tool",
    "python",
    "run_python",
    "tool",
]


def default_tools(names: list[str], docs: str | Path | None = None) -> ToolRegistry:
    """A registry of the named built-in tools; "search" indexes the folder `docs`."""
    registry = ToolRegistry()
    for name in names:
        if name == "calculator":
            registry.register(calculator)
        elif name == "python":
            registry.register(python)
        elif name == "search":
            if docs is None:
                raise ValueError("the search tool needs a folder of documents to search: pass docs=FOLDER")
            registry.register(make_search_tool(docs))
        else:
            raise ValueError(f"unknown tool {name!r}; available: {', '.join(TOOL_NAMES)}")
    return registry
