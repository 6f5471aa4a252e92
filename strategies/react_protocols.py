"""How a ReAct step is asked for and read back, three ways (strategies/react.py runs the loop).

* text: after worked examples the model writes "Thought: …\\nAction: tool[input]"; generation
  stops at "Observation:" so it never invents one (the paper's format; any backend);
* json: the same step as one JSON object {"thought", "action", "input"} whose `action` must be a
  tool's name or "finish": the backend constrains its output to that schema (llama.cpp compiles it
  into a grammar), so even a small model writes a step that parses;
* native: the tools and a `finish` function go in `request.tools`; results return as "tool" turns.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from reasoner.types import Choice, GenerationRequest, Message, ToolCall
from reasoner.strategies.common import templates
from reasoner.tools.base import tool

if TYPE_CHECKING:
    from reasoner.strategies.react import ReAct

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


def parse_json(text: str, tools: list[str]) -> Step:
    """The step a JSON-protocol completion describes (a schema-constrained one always parses,
    unless it ran out of tokens)."""
    try:
        data = json.loads(text, strict=False)  # a grammar lets raw newlines into strings
        name, argument, thought = str(data["action"]).strip().lower(), str(data["input"]).strip(), str(data["thought"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return Step(thought=text.strip(), action=text.strip(), tool=None, observation="the step is not a JSON object with thought, action and input")
    if name != FINISH and name not in tools:
        return Step(thought=thought, action=f"{name}[{argument}]", tool=None, observation=f"there is no tool named {name!r}")
    return Step(thought=thought.strip(), action=f"{name}[{argument}]", tool=name, input=argument)


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


def step_schema(tools: list[str], max_tokens: int) -> dict[str, Any]:
    """The JSON schema of one step: a thought, then an action that must be a tool or finish.

    The strings are capped so the whole object fits in `max_tokens`, a step cut off being no step:
    about 20 tokens of keys and quotes; a thought in words, 3 characters a token; an input at 1
    a token, as numbers are (tokenizers split digits one a token).
    """
    room = max(20, max_tokens - 20)
    return {
        "type": "object",
        "properties": {
            "thought": {"type": "string", "maxLength": room * 2 // 5 * 3},
            "action": {"type": "string", "enum": [*tools, FINISH]},
            "input": {"type": "string", "maxLength": room * 3 // 5},
        },
        "required": ["thought", "action", "input"],
        "additionalProperties": False,
    }


def ending(reason: str, max_steps: int, native: bool = False) -> str:
    """What asks for the final answer once the loop stops without one."""
    return templates.render("react/final.j2", native=native, reason=reason, max_steps=max_steps)


class StepProtocol(Protocol):
    """How a step is asked for and read, one way: the requests of a run's steps and of its final answer, and their replies read."""

    mode: str

    def step(self, steps: list[Step]) -> GenerationRequest: ...
    def parse(self, choice: Choice) -> Step: ...
    def final(self, steps: list[Step], reason: str) -> GenerationRequest: ...
    def said(self, choice: Choice) -> str: ...
    def shown(self, steps: list[Step], reason: str, said: str) -> str: ...


class Text:
    """The paper's protocol: the transcript so far is the start of the model's reply."""

    mode = "text"

    def __init__(self, react: ReAct, question: str, tools: list[str], descriptions: list[str]) -> None:
        self.react, self.names = react, tools
        self.prompt = templates.render("react/prompt.j2", tools=descriptions, names=tools, question=question)

    def step(self, steps: list[Step]) -> GenerationRequest:
        return self.react.turn(self.prompt, transcript(steps) + "Thought:", stop=("Observation:", "\nQuestion:"))

    def parse(self, choice: Choice) -> Step:
        return parse_text(choice.text, self.names)

    def final(self, steps: list[Step], reason: str) -> GenerationRequest:
        prefill = transcript(steps) + ending(reason, self.react.max_steps)
        return self.react.turn(self.prompt, prefill, max_tokens=self.react.answer_max_tokens, stop=("]", "\n"))

    def said(self, choice: Choice) -> str:
        return choice.text

    def shown(self, steps: list[Step], reason: str, said: str) -> str:
        """The run as the answer's text: the transcript, and the final answer if it was asked for."""
        if reason == FINISH:
            return transcript(steps)
        return f"{transcript(steps)}{ending(reason, self.react.max_steps)}{said.strip()}]"


class Json(Text):
    """Each step one JSON object, its form enforced by the backend (`json_schema`)."""

    mode = "json"

    def __init__(self, react: ReAct, question: str, tools: list[str], descriptions: list[str]) -> None:
        super().__init__(react, question, tools, descriptions)
        self.prompt = templates.render("react/json_prompt.j2", tools=descriptions, names=tools, question=question)

    def step(self, steps: list[Step]) -> GenerationRequest:
        return self.react.turn(self.prompt, json_transcript(steps) + "Step: ", json_schema=step_schema(self.names, self.react.max_tokens))

    def parse(self, choice: Choice) -> Step:
        return parse_json(choice.text, self.names)

    def final(self, steps: list[Step], reason: str) -> GenerationRequest:
        prefill = json_transcript(steps) + templates.render("react/json_final.j2", reason=reason)
        return self.react.turn(self.prompt, prefill, max_tokens=self.react.answer_max_tokens, stop=('"', "\n"))

    def shown(self, steps: list[Step], reason: str, said: str) -> str:
        if reason == FINISH:
            return json_transcript(steps)
        return f"{json_transcript(steps)}{templates.render('react/json_final.j2', reason=reason)}{said.strip()}\"}}"


class Native:
    """Function calling: the tools go in the request, each observation comes back as a tool turn."""

    mode = "native"

    def __init__(self, react: ReAct, question: str, tools: list[str], schemas: list[dict[str, Any]]) -> None:
        self.react, self.names, self.schemas = react, tools, (*schemas, FINISH_SCHEMA)
        self.opening = Message(role="user", content=templates.render("react/native.j2", question=question))

    def step(self, steps: list[Step], ask: str = "") -> GenerationRequest:
        messages = [self.opening]
        for s in steps:
            call = ToolCall(id=s.call_id or "", name=s.action.split("[", 1)[0], arguments=s.input)
            messages += [Message(role="assistant", content=s.thought, tool_calls=(call,)), Message(role="tool", content=s.observation, tool_call_id=s.call_id)]
        if ask:
            messages.append(Message(role="user", content=ask))
        return self.react.request("").model_copy(update={"prompt": None, "messages": tuple(messages), "tools": self.schemas})

    def parse(self, choice: Choice) -> Step:
        return parse_native(choice, self.names)

    def final(self, steps: list[Step], reason: str) -> GenerationRequest:
        return self.step(steps, ending(reason, self.react.max_steps, native=True))

    def said(self, choice: Choice) -> str:
        step = parse_native(choice, self.names)
        return step.input if step.tool == FINISH else choice.text

    # The transcript reads the way the text protocol writes it, in both modes.
    shown = Text.shown


def transcript(steps: list[Step]) -> str:
    return templates.render("react/transcript.j2", steps=steps)


def json_transcript(steps: list[Step]) -> str:
    lines = []
    for s in steps:
        lines.append("Step: " + json.dumps({"thought": s.thought, "action": s.tool or s.action, "input": s.input}))
        if s.tool != FINISH:
            lines.append(f"Observation: {s.observation}")
    return "".join(line + "\n" for line in lines)
