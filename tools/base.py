"""Tools: typed Python functions with a name, a description and validated arguments.

A tool knows nothing about models. The registry renders tool descriptions for text prompts
(ReAct's `Action: name[input]`) and as OpenAI `tools` schemas for backends with function calling.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model


class ToolResult(BaseModel):
    """What a tool call gave back: always a result, never an exception, so a model can read it."""

    tool: str
    ok: bool
    output: str  # what the model sees as the observation
    input: str | None = None  # what the tool was called with, as text, for the trace
    value: Any = None  # the raw value, for strategies that use it (e.g. a program's result)
    error: str | None = None


class Tool:
    def __init__(self, fn: Callable[..., Any | Awaitable[Any]], name: str | None = None, description: str | None = None):
        self.fn = fn
        self.name = name or fn.__name__
        self.description = (description or inspect.getdoc(fn) or "").strip().split("\n\n")[0]
        params = inspect.signature(fn).parameters
        hints = inspect.get_annotations(fn, eval_str=True)
        fields: dict[str, Any] = {
            p: (hints.get(p, Any), ... if param.default is inspect.Parameter.empty else param.default)
            for p, param in params.items()
        }
        self.args: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{self.name}_args", __config__=ConfigDict(extra="forbid"), **fields
        )

    @property
    def first_arg(self) -> str:
        return next(iter(self.args.model_fields))

    def parse_args(self, raw: str | dict[str, Any]) -> BaseModel:
        """Arguments from a JSON object, or from plain text for the tool's first argument
        (`calculator[2 + 3]` in a ReAct trace)."""
        if isinstance(raw, str):
            text = raw.strip()
            if text.startswith("{"):
                try:
                    raw = json.loads(text)
                except json.JSONDecodeError:
                    raw = {self.first_arg: raw}
            else:
                raw = {self.first_arg: raw}
        return self.args.model_validate(raw)

    async def __call__(self, raw: str | dict[str, Any]) -> ToolResult:
        result = await self._call(raw)
        if result.input is None:
            result.input = raw if isinstance(raw, str) else json.dumps(raw)
        return result

    async def _call(self, raw: str | dict[str, Any]) -> ToolResult:
        try:
            args = self.parse_args(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
            return ToolResult(tool=self.name, ok=False, output=f"bad arguments for {self.name}: {problems}", error=problems)
        try:
            if inspect.iscoroutinefunction(self.fn):
                value = await self.fn(**args.model_dump())
            else:
                # Tools may block (a subprocess, a file scan): keep the event loop free.
                value = await asyncio.to_thread(self.fn, **args.model_dump())
        except Exception as exc:  # noqa: BLE001 - a tool failure is an observation, not a crash
            message = f"{type(exc).__name__}: {exc}"
            return ToolResult(tool=self.name, ok=False, output=f"error: {message}", error=message)
        if isinstance(value, ToolResult):
            return value
        return ToolResult(tool=self.name, ok=True, output=str(value), value=value)

    def describe(self) -> str:
        return f"{self.name}[{self.first_arg}]: {self.description}"

    def openai_schema(self) -> dict[str, Any]:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": schema}}


def tool(name: str | None = None, description: str | None = None) -> Callable[[Callable[..., Any]], Tool]:
    """Decorator: `@tool()` over a typed function makes it a Tool."""

    def wrap(fn: Callable[..., Any]) -> Tool:
        return Tool(fn, name, description)

    return wrap


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, t: Tool) -> Tool:
        if t.name in self._tools:
            raise ValueError(f"a tool named {t.name!r} is already registered")
        self._tools[t.name] = t
        return t

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._tools.values())

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool:
        if name not in self._tools:
            raise KeyError(f"unknown tool {name!r}; tools: {', '.join(self._tools) or 'none'}")
        return self._tools[name]

    async def call(self, name: str, raw: str | dict[str, Any]) -> ToolResult:
        if name not in self._tools:
            return ToolResult(tool=name, ok=False, output=f"unknown tool {name!r}; use one of: {', '.join(self._tools)}", error="unknown tool")
        return await self._tools[name](raw)

    def describe(self) -> str:
        """One line per tool, for a text prompt."""
        return "\n".join(t.describe() for t in self._tools.values())

    def openai_schemas(self) -> list[dict[str, Any]]:
        return [t.openai_schema() for t in self._tools.values()]
