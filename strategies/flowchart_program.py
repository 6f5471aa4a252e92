"""The `program` form of `flowchart`: a short Python `solution()` whose sub-steps call the host.

The program runs in the project's WebAssembly sandbox (`tools/python_sandbox.py`); its `if`, `for`
and `while` are ordinary Python. Three kinds of call leave the sandbox, over the sandbox's own
message channel (`Callbacks`: no new permission, a bounded number of bounded calls):
* `ask(question, **values)`: a sub-question, answered by the model;
* `calc(expr)`: arithmetic, evaluated by the project's calculator on the host;
* a call of a helper the program never defined (`count_weekdays(start, end)`): answered by the
  model, given the helper's name, its arguments and the caller's variables: Chain of Code's
  "LMulator" (Li et al. 2023, "Chain of Code: Reasoning with a Language Model-Augmented Code
  Emulator"). A name it never defined used as a value (`weeks * 7`) is an error, as in the graph
  form: the model answers calls, it does not invent the program's missing variables.
The host checks every call (a `Call`), answers at most `max_steps` of them, and refuses the rest,
which ends the program with an error, so the solve falls back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from reasoner.tools.base import ToolResult
from reasoner.tools.python_sandbox import Callbacks, run_python

# Runs in the sandbox, before the model's program (which arrives as a JSON string, never spliced).
PRELUDE = '''
import builtins as _builtins, json as _json, linecache as _linecache, sys as _sys
from reasoner_host import call as _call

def _number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text

def _plain(values):
    return {str(k): v for k, v in values.items() if not str(k).startswith("_") and isinstance(v, (int, float, str, bool))}

def _line():
    return _sys._getframe(2).f_lineno

def ask(question, **values):
    return _number(_call(_json.dumps({"op": "ask", "question": str(question), "values": _plain(values), "line": _line()})))

def calc(expr):
    return _number(_call(_json.dumps({"op": "calc", "expr": str(expr), "line": _line()})))

class _Unknown:
    """A name the program never defined. Called, it is a helper the model answers; used as a
    value it is an undefined name, so the program fails (a NameError naming it) and the solve
    falls back: the model answers calls, it does not invent the program's missing variables."""
    def __init__(self, name):
        self._name = name
    def __call__(self, *args, **kwargs):
        frame = _sys._getframe(1)
        return _number(_call(_json.dumps({"op": "helper", "name": self._name, "args": [repr(a)[:200] for a in args],
                                          "kwargs": {k: repr(v)[:200] for k, v in kwargs.items()},
                                          "state": _plain(frame.f_locals), "line": frame.f_lineno})))
    def _undefined(self, *_):
        raise NameError(f"name {self._name!r} is not defined")
    __getattr__ = _undefined  # `math.ceil(x)` with no `import math`
    def __repr__(self):  # what a program that returns it gives back: no number, so a fallback
        return f"<undefined name {self._name!r}>"

for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow"):
    setattr(_Unknown, f"__r{_op}__", _Unknown._undefined)
for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "eq", "ne", "lt", "le", "gt", "ge", "neg", "pos",
            "abs", "index", "bool", "int", "float", "round", "format", "iter", "len", "getitem", "contains", "hash"):
    setattr(_Unknown, f"__{_op}__", _Unknown._undefined)

class _Names(dict):
    """The program's globals: a name it never defined is an `_Unknown`."""
    def __missing__(self, name):
        if hasattr(_builtins, name) or name.startswith("__"):
            raise KeyError(name)
        return _Unknown(name)

def _run(source):
    names = _Names(ask=ask, calc=calc, __name__="__program__", __builtins__=_builtins)
    _linecache.cache["<program>"] = (len(source), None, source.splitlines(True), "<program>")  # errors name its lines
    exec(compile(source, "<program>", "exec"), names)
    if not callable(names.get("solution")):
        raise NameError("the program defines no solution()")
    return names["solution"]()
'''

Scalar = int | float | str | bool


class Ask(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    op: Literal["ask"]
    question: str = Field(max_length=1000)
    values: dict[str, Scalar] = Field(max_length=30)
    line: int = 0  # of the program, for the trace: a loop's calls share theirs


class Calc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    op: Literal["calc"]
    expr: str = Field(max_length=500)
    line: int = 0


class Helper(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    op: Literal["helper"]
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z_0-9]{0,60}$")
    args: list[str] = Field(max_length=10)
    kwargs: dict[str, str] = Field(max_length=10)
    state: dict[str, Scalar] = Field(max_length=30)
    line: int = 0


Call = Annotated[Ask | Calc | Helper, Field(discriminator="op")]
_CALL: TypeAdapter[Ask | Calc | Helper] = TypeAdapter(Call)


class Host(Protocol):
    """How the host answers the program's calls (each a node of the run's graph), as text."""

    def ask(self, call: Ask) -> Awaitable[str]: ...
    def calc(self, call: Calc) -> Awaitable[str]: ...
    def helper(self, call: Helper) -> Awaitable[str]: ...


def job_code(program: str) -> str:
    """What the sandbox runs: the prelude, then the program (as data), then its result."""
    return f"{PRELUDE}\n_run({json.dumps(program)})\n"


async def run_flow_program(program: str, host: Host, *, max_steps: int, timeout_s: float) -> ToolResult:
    """Run `program` in the sandbox, answering its calls on this event loop; at most `max_steps`
    calls are answered, and `timeout_s` bounds the program's own time (not the host's answers)."""
    loop = asyncio.get_running_loop()
    answered: list[str] = []

    def answer(text: str) -> tuple[bool, str]:
        # In the sandbox's thread: check the call, then hand it to the event loop and wait.
        if len(answered) >= max_steps:
            return False, f"step budget exceeded: the program made more than {max_steps} calls"
        try:
            call = _CALL.validate_json(text)
        except ValidationError as exc:
            return False, f"not a call the host answers: {exc.errors()[0]['msg']}"
        answered.append(call.op)
        handler = {"ask": host.ask, "calc": host.calc, "helper": host.helper}[call.op]
        try:
            return True, asyncio.run_coroutine_threadsafe(handler(call), loop).result()  # type: ignore[arg-type]
        except Exception as exc:  # the step failed (a calculator error): the program sees it
            return False, str(exc)[:500]

    callbacks = Callbacks(answer, max_calls=max_steps + 1)
    result = await asyncio.to_thread(run_python, job_code(program), timeout_s, callbacks)
    shown = "solution() returned None" if result.ok and result.value is None else result.output  # not the python tool's hint
    return result.model_copy(update={"input": program, "tool": "program", "output": shown})

