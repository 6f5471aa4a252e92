"""ReAct (Yao et al. 2022, "ReAct: Synergizing Reasoning and Acting in Language Models").

The model alternates Thought → Action → Observation until it acts `finish[answer]`:

    for each step, up to max_steps:
        thought  = the model, shown the question and the steps so far, writes a thought and an action
        action   = the tool the action names runs on its input
        observation = the tool's result, added to the transcript the next thought sees
        stop at finish[answer]

`forward` is that loop, run as one node (`react`): each step is a `thought` (a model call) and an
`action` (a tool node whose ToolResult's `output` is the observation), awaited in turn, so the
trace holds every call and a live display watches these labels through `Strategy.solve(...,
on_node=...)`. How a step is asked for and read is the protocol's job (strategies/react_protocols.py):
`text` (the paper's "Thought: …\\nAction: tool[input]"), `json` (each step a JSON object the backend
is held to by a schema, so a small model's steps parse) or `native` (function calling); `auto`
picks native where the backend calls tools, else json where it constrains output to a schema, else
text. An unreadable action becomes an observation that explains the valid forms. An action repeated
(the same tool and input twice in a row, or three times in all) is not run: the model is told so and
asked for its final answer (a `final` model call), as it is after `max_steps` steps.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from reasoner.graph import Capabilities
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.strategies.common import final_value, templates
from reasoner.strategies.react_protocols import FINISH, Json, Native, Step, StepProtocol, Text, parse_native, parse_text
from reasoner.tools import TOOL_NAMES, default_tools
from reasoner.tools.base import ToolRegistry, ToolResult

__all__ = ["ReAct", "Step", "conclusion", "parse_native", "parse_text", "repeats"]


def repeats(steps: list[Step], step: Step) -> int:
    """How many times the step's action has now been taken, if that is too often (0 if not)."""
    if step.tool in (None, FINISH):
        return 0
    key = (step.tool, "".join(step.input.split()))  # spacing does not make an input new
    same = [(s.tool, "".join(s.input.split())) == key for s in steps]
    times = sum(same) + 1
    return times if (same and same[-1]) or times >= 3 else 0


class ReAct(Strategy):
    name = "react"
    summary = "Thought → Action (calculator, python, …) → Observation until finish[answer] (1 call per step)."

    tools: list[str] = Field(["calculator", "python"], description="tools the model may use (comma-separated)")
    docs: str | None = Field(None, description="folder of documents for the search tool")
    mode: Literal["auto", "text", "json", "native"] = Field(
        "auto",
        description="text: Thought/Action/Observation text; json: each step a JSON object held to a schema; native: "
        "function calling; auto: native where the backend calls tools, else json where it takes a schema, else text",
    )
    max_steps: int = Field(8, ge=1, description="most Thought/Action/Observation steps before the final answer is asked for")
    answer_max_tokens: int = Field(32, ge=1, description="tokens for a final answer that had to be asked for")
    _registry: ToolRegistry | None = PrivateAttr(None)

    @field_validator("tools", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _usable(self) -> ReAct:
        if unknown := [t for t in self.tools if t not in TOOL_NAMES]:
            raise ValueError(f"unknown tools {unknown}; the built-in tools are {', '.join(TOOL_NAMES)}")
        if "search" in self.tools and self.docs is None:
            raise ValueError("the search tool needs a folder of documents: set docs")
        return self

    def with_tools(self, registry: ToolRegistry) -> ReAct:
        """This strategy with these tools instead of `default_tools(self.tools)` (tests, custom tools)."""
        copy = self.model_copy(update={"tools": registry.names()})
        copy._registry = registry
        return copy

    async def forward(self, run: Run, question: str) -> Answer:
        """Thought → Action → Observation until finish, each step a model call and a tool node."""
        registry = self._registry or default_tools(self.tools, docs=self.docs)
        protocol = self.protocol(run.backend, registry, question)
        steps: list[Step] = []
        reason = "max_steps"
        while len(steps) < self.max_steps:
            step = protocol.parse((await run.generate(protocol.step(steps), label="thought")).choices[0])
            # The tool node's output (a ToolResult) is the observation the live display shows.
            observation: ToolResult = await run.tool(self.act, step, steps[:], registry, protocol.mode, label="action")
            steps.append(step.model_copy(update={"observation": "" if step.tool == FINISH else observation.output}))
            if step.tool == FINISH:
                return conclusion(steps, step.input, protocol.shown(steps, FINISH, step.input), FINISH, protocol.mode)
            if repeats(steps[:-1], step):
                reason = "repeated_action"
                break
        said = protocol.said((await run.generate(protocol.final(steps, reason), label="final")).choices[0])
        return conclusion(steps, said, protocol.shown(steps, reason, said), reason, protocol.mode)

    def protocol(self, backend: Capabilities, registry: ToolRegistry, question: str) -> StepProtocol:
        """The protocol `mode` names; `auto` picks the strongest one the backend can hold the model to."""
        mode = self.mode
        if mode == "auto":
            mode = "native" if backend.supports_tools else "json" if backend.supports_json_schema else "text"
        if mode == "native":
            return Native(self, question, registry.names(), list(registry.openai_schemas()))
        kind = Json if mode == "json" else Text
        return kind(self, question, registry.names(), registry.describe().splitlines())

    async def act(self, step: Step, before: list[Step], registry: ToolRegistry, mode: str) -> ToolResult:
        """Run the step's action; an unreadable, final or repeated one is answered without a tool."""
        if step.tool is None:
            explained = templates.render("react/malformed.j2", problem=step.observation, tools=registry.names(), mode=mode)
            return ToolResult(tool="invalid", ok=False, output=explained, error=step.observation)
        if step.tool == FINISH:
            return ToolResult(tool=FINISH, ok=True, output=step.input.strip(), value=step.input.strip(), input=step.input)
        if times := repeats(before, step):
            message = templates.render("react/repeated.j2", action=step.action, times=times)
            return ToolResult(tool=step.tool, ok=False, output=message, error="repeated action", input=step.input)
        return await registry.call(step.tool, step.input)


def conclusion(steps: list[Step], said: str, text: str, reason: str, mode: str) -> Answer:
    """The answer `said` (the finish argument), with the whole transcript and how the loop ended."""
    used = [s.tool for s in steps if s.tool not in (None, FINISH)]
    return Answer(
        answer=final_value(said),
        text=text.strip(),
        details={
            "mode": mode,
            "steps": [s.model_dump(exclude={"call_id"}) for s in steps],
            "tools_used": list(dict.fromkeys(used)),
            "stop_reason": reason,
        },
    )
