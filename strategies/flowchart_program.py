"""The `program` form of `flowchart`: a short Python `solution()` whose sub-steps call the host.

The program runs in the project's WebAssembly sandbox (`tools/python_sandbox.py`); its `if`, `for`
and `while` are ordinary Python. Three kinds of call leave the sandbox, over the sandbox's own
message channel (`Callbacks`: no new permission, a bounded number of bounded calls):
* `ask(question, **values)`: a sub-question, answered by the model;
* `calc(expr)`: arithmetic, evaluated by the project's calculator on the host;
* a call of a helper the program never defined (`count_weekdays(start, end)`): answered by the
  model, given the helper's name, its arguments and the caller's variables: Chain of Code's
  "LMulator" (Li et al. 2023, "Chain of Code: Reasoning with a Language Model-Augmented Code
  Emulator"); a name it never defined, used as a value (`weeks * 7`), is the model's too.
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
import builtins as _builtins, json as _json, linecache as _linecache, operator as _operator, sys as _sys
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

def _report(op, name, frame, **fields):
    return _number(_call(_json.dumps({"op": op, "name": name, "state": _plain(frame.f_locals), "line": frame.f_lineno, **fields})))

def _where(frame):
    return type("Seen", (), {"f_locals": _plain(frame.f_locals), "f_lineno": frame.f_lineno})

class _Unknown:
    """A name the program never defined. Called, the model answers as that helper would; used as
    a value (in arithmetic, a comparison, range(), an f-string), the model says its value, asked
    once, given the variables where the name was first read."""
    def __init__(self, name, frame):
        self._name, self._seen, self._known = name, _where(frame), None
    def __call__(self, *args, **kwargs):
        return _report("helper", self._name, _sys._getframe(1), args=[repr(a)[:200] for a in args],
                       kwargs={k: repr(v)[:200] for k, v in kwargs.items()})
    def _v(self):
        if self._known is None:
            self._known = _report("value", self._name, self._seen)
        return self._known
    def __repr__(self):
        return repr(self._v())
    __str__ = __repr__
    def __format__(self, spec):
        return format(self._v(), spec)
    def __hash__(self):
        return hash(self._v())

def _delegate(op, flipped=False):
    def method(self, *other):
        args = [_known(o) for o in other]
        return getattr(_operator, op)(*args, self._v()) if flipped else getattr(_operator, op)(self._v(), *args)
    return method

def _known(value):
    return value._v() if isinstance(value, _Unknown) else value

for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow"):
    setattr(_Unknown, f"__{_op}__", _delegate(_op))
    setattr(_Unknown, f"__r{_op}__", _delegate(_op, flipped=True))
for _op in ("eq", "ne", "lt", "le", "gt", "ge", "neg", "pos", "abs", "index", "truth"):
    setattr(_Unknown, f"__{'bool' if _op == 'truth' else _op}__", _delegate(_op))
for _kind in (int, float, round):
    setattr(_Unknown, f"__{_kind.__name__}__", lambda self, *a, _kind=_kind: _kind(self._v(), *a))

class _Names(dict):
    """The program's globals: a name it never defined is an `_Unknown`, kept, so it is asked once."""
    def __missing__(self, name):
        if hasattr(_builtins, name) or name.startswith("__"):
            raise KeyError(name)
        self[name] = _Unknown(name, _sys._getframe(1))
        return self[name]

def _run(source):
    names = _Names(ask=ask, calc=calc, __name__="__program__", __builtins__=_builtins)
    _linecache.cache["<program>"] = (len(source), None, source.splitlines(True), "<program>")  # errors name its lines
    exec(compile(source, "<program>", "exec"), names)
    if not callable(names.get("solution")):
        raise NameError("the program defines no solution()")
    return _known(names["solution"]())
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


class Value(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    op: Literal["value"]
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z_0-9]{0,60}$")
    state: dict[str, Scalar] = Field(max_length=30)
    line: int = 0


Call = Annotated[Ask | Calc | Helper | Value, Field(discriminator="op")]
_CALL: TypeAdapter[Ask | Calc | Helper | Value] = TypeAdapter(Call)


class Host(Protocol):
    """How the host answers the program's calls (each a node of the run's graph), as text."""

    def ask(self, call: Ask) -> Awaitable[str]: ...
    def calc(self, call: Calc) -> Awaitable[str]: ...
    def helper(self, call: Helper) -> Awaitable[str]: ...
    def value(self, call: Value) -> Awaitable[str]: ...


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
        handler = {"ask": host.ask, "calc": host.calc, "helper": host.helper, "value": host.value}[call.op]
        try:
            return True, asyncio.run_coroutine_threadsafe(handler(call), loop).result()  # type: ignore[arg-type]
        except Exception as exc:  # the step failed (a calculator error): the program sees it
            return False, str(exc)[:500]

    callbacks = Callbacks(answer, max_calls=max_steps + 1)
    result = await asyncio.to_thread(run_python, job_code(program), timeout_s, callbacks)
    return result.model_copy(update={"input": program, "tool": "program"})

