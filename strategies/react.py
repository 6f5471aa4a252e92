"""ReAct (Yao et al. 2022, "ReAct: Synergizing Reasoning and Acting in Language Models").

The model alternates Thought → Action → Observation until it acts `finish[answer]`. Text protocol
(any backend): after worked examples the model writes "Thought: …\\nAction: tool[input]";
generation stops at "Observation:" so it never invents one; we run the tool and append
"Observation: <result>". Native protocol (`mode="auto"` picks it where the backend supports
tools): the tools and a `finish` function go in `request.tools`; results return as "tool" turns.

Each step adds three nodes: `thought` (the model call), `action` (a tool node whose ToolResult's
`output` is the observation) and `observation` (appends the step and forwards to the next step).
A live display watches these labels through `Strategy.solve(..., on_node=...)`. An unreadable
action becomes an observation that explains the valid forms. An action repeated (the same tool and
input twice in a row, or three times in all) is not run: the model is told so and asked for its
final answer (a `final` model call), as it is after `max_steps` steps.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from reasoner.graph import Ctx, Forward, Graph, NodeId
from reasoner.strategy import Strategy
from reasoner.types import Answer, Choice, GenerationRequest, Message, ToolCall
from reasoner.strategies.common import final_value, templates
from reasoner.tools import TOOL_NAMES, default_tools
from reasoner.tools.base import ToolRegistry, ToolResult, tool

FINISH = "finish"


def _finish(answer: str) -> str:
    return answer


# Native mode offers `finish` as one more function beside the tools; only its schema is used.
FINISH_SCHEMA = tool(FINISH, "Give the final answer to the problem (a number) and stop.")(_finish).openai_schema()
_ACTION = re.compile(r"^[ \t]*Action[ \t]*:[ \t]*", re.M)
_NEXT_LABEL = re.compile(r"^[ \t]*(?:Thought|Action|Observation)[ \t]*:", re.M)
_CALL = re.compile(r"(?P<name>[A-Za-z_][\w-]*)\s*\[(?P<input>.*)\]", re.S)
_FINAL_ANSWER = re.compile(r"Final Answer\s*:\s*(?P<answer>.+)", re.I)


class Step(BaseModel):
    thought: str
    action: str  # as the model wrote it, e.g. "calculator[36 / 2]"
    tool: str | None  # the tool it names, "finish", or None when the action is unreadable
    input: str = ""  # the tool's input (JSON arguments in native mode); the answer for finish
    observation: str = ""
    call_id: str | None = None  # native mode: the id the tool message answers


def parse_text(text: str, tools: list[str]) -> Step:
    """The step a text-protocol completion (following "Thought:") describes."""
    found = _ACTION.search(text)
    if found is None:
        final = _FINAL_ANSWER.search(text)
        if final:  # a common slip for finish[...]; the answer is still clear
            return Step(thought=text[: final.start()].strip(), action=f"finish[{final['answer'].strip()}]", tool=FINISH, input=final["answer"].strip())
        return Step(thought=text.strip(), action="", tool=None, observation="there is no `Action:` line")
    thought, rest = text[: found.start()].strip(), text[found.end() :]
    end = _NEXT_LABEL.search(rest)
    action = (rest[: end.start()] if end else rest).strip()
    call = _CALL.fullmatch(action)
    if call is None:
        return Step(thought=thought, action=action, tool=None, observation=f"{action!r} is not of the form name[input]")
    name = call["name"].lower()
    if name != FINISH and name not in tools:
        return Step(thought=thought, action=action, tool=None, observation=f"there is no tool named {call['name']!r}")
    return Step(thought=thought, action=action, tool=name, input=call["input"].strip())


def parse_native(choice: Choice, tools: list[str]) -> Step:
    """The step a native reply describes: its first tool call (one action per step, as in ReAct),
    or, for a reply without calls, its text as the final answer."""
    if not choice.tool_calls:
        return Step(thought=choice.text.strip(), action=f"finish[{choice.text.strip()}]", tool=FINISH, input=choice.text)
    call = choice.tool_calls[0]
    step = Step(thought=choice.text.strip(), action=f"{call.name}[{call.arguments}]", tool=call.name, input=call.arguments, call_id=call.id)
    if call.name == FINISH:
        try:
            step.input = str(json.loads(call.arguments).get("answer", ""))
        except (json.JSONDecodeError, AttributeError):
            pass  # the raw arguments still hold the answer's text
    elif call.name not in tools:
        step.tool, step.observation = None, f"there is no function named {call.name!r}"
    return step


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
    mode: Literal["auto", "text", "native"] = Field(
        "auto", description="text: Thought/Action/Observation text; native: function calling; auto: native where the backend supports tools"
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

    def build(self, graph: Graph, question: str) -> NodeId:
        registry = self._registry or default_tools(self.tools, docs=self.docs)
        names = registry.names()
        prompt = templates.render("react/prompt.j2", tools=registry.describe().splitlines(), names=names, question=question)
        opening = Message(role="user", content=templates.render("react/native.j2", question=question))
        schemas = (*registry.openai_schemas(), FINISH_SCHEMA)
        steps: list[Step] = []  # this run's transcript; each step is appended by its `observation` node

        def native(ctx: Ctx) -> bool:
            return self.mode == "native" or (self.mode == "auto" and ctx.backend.supports_tools)

        def transcript() -> str:
            return templates.render("react/transcript.j2", steps=steps)

        def history() -> list[Message]:
            out = [opening]
            for s in steps:
                call = ToolCall(id=s.call_id or "", name=s.action.split("[", 1)[0], arguments=s.input)
                out += [Message(role="assistant", content=s.thought, tool_calls=(call,)), Message(role="tool", content=s.observation, tool_call_id=s.call_id)]
            return out

        def parse(ctx: Ctx, node: NodeId) -> Step:
            choice = ctx[node].choices[0]
            return parse_native(choice, names) if native(ctx) else parse_text(choice.text, names)

        def ask(ctx: Ctx, ending: str = "") -> GenerationRequest:
            """The request for the next step or, with an `ending` that asks for it, the final answer."""
            if native(ctx):
                messages = (*history(), *([Message(role="user", content=ending)] if ending else []))
                return self.request("").model_copy(update={"prompt": None, "messages": messages, "tools": schemas})
            if ending:
                return self.turn(prompt, transcript() + ending, max_tokens=self.answer_max_tokens, stop=("]", "\n"))
            return self.turn(prompt, transcript() + "Thought:", stop=("Observation:", "\nQuestion:"))

        def step(after: list[NodeId]) -> NodeId:
            thought = graph.generate(ask, after=after, label="thought")

            async def act(ctx: Ctx) -> ToolResult:
                s = parse(ctx, thought)
                if s.tool is None:
                    explained = templates.render("react/malformed.j2", problem=s.observation, tools=names)
                    return ToolResult(tool="invalid", ok=False, output=explained, error=s.observation)
                if s.tool == FINISH:
                    return ToolResult(tool=FINISH, ok=True, output=s.input.strip(), value=s.input.strip(), input=s.input)
                if times := repeats(steps, s):
                    message = templates.render("react/repeated.j2", action=s.action, times=times)
                    return ToolResult(tool=s.tool, ok=False, output=message, error="repeated action", input=s.input)
                return await registry.call(s.tool, s.input)

            action = graph.tool(act, after=[thought], label="action")

            def observe(ctx: Ctx) -> Answer | Forward:
                s, result = parse(ctx, thought), ctx[action]
                stop = "repeated_action" if repeats(steps, s) else None
                steps.append(s.model_copy(update={"observation": "" if s.tool == FINISH else result.output}))
                if s.tool == FINISH:
                    return conclusion(steps, s.input, transcript(), "finish", native(ctx))
                if stop or len(steps) >= self.max_steps:
                    return Forward(final(stop or "max_steps", action))
                # The next step follows the action, not this node, which hands its place to it.
                return Forward(step([action]))

            return graph.function(observe, after=[thought, action], label="observation")

        def final(reason: str, after: NodeId) -> NodeId:
            def ending(native: bool) -> str:
                return templates.render("react/final.j2", native=native, reason=reason, max_steps=self.max_steps)

            call = graph.generate(lambda ctx: ask(ctx, ending(native(ctx))), after=[after], label="final")

            def conclude(ctx: Ctx) -> Answer:
                choice = ctx[call].choices[0]
                said = choice.text
                if native(ctx) and (s := parse_native(choice, names)).tool == FINISH:
                    said = s.input
                # The transcript ends the way the text protocol asks for the answer, in both modes.
                text = f"{transcript()}{ending(False)}{said.strip()}]"
                return conclusion(steps, said, text, reason, native(ctx))

            return graph.function(conclude, after=[call], label="answer")

        return step([])


def conclusion(steps: list[Step], said: str, text: str, reason: str, native: bool) -> Answer:
    """The answer `said` (the finish argument), with the whole transcript and how the loop ended."""
    used = [s.tool for s in steps if s.tool not in (None, FINISH)]
    return Answer(
        answer=final_value(said),
        text=text.strip(),
        details={
            "mode": "native" if native else "text",
            "steps": [s.model_dump(exclude={"call_id"}) for s in steps],
            "tools_used": list(dict.fromkeys(used)),
            "stop_reason": reason,
        },
    )
