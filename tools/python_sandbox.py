"""Run model-written Python in a sandbox and report what it did.

`run_python(code)` runs the code in CPython compiled to WebAssembly (Pyodide) inside a Deno
process that has no permission but to read its own files (see `sandbox_runtime` for the
boundary). The program sees an in-memory file system with a fresh working directory, no
network, no processes, no signals, no host files. Limits: `timeout_s` of wall-clock time
(then the process is killed), 512 MB of WebAssembly memory, 1 MB per file it writes and 100
files (all in memory), 1 MB of stdout and of stderr, of which 10,000 bytes are shown.

The outcome is the value of its last expression (as a REPL would show it) or, when there is
none, of `solution()` if the code defines it (PAL style). Whatever comes back is validated:
the program can forge any report it likes, and a malformed one is a failed run, never an
exception here. When the sandbox cannot run (no Deno, no Pyodide), every run fails with a
message saying how to install it: code is never run without the boundary.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from reasoner.tools.base import ToolResult, tool
from reasoner.tools.sandbox_runtime import HOW_TO_INSTALL, SandboxUnavailable, pool

MEMORY_BYTES = 512 * 2**20
OUTPUT_BYTES = 2**20  # each of stdout and stderr
FILE_BYTES = 2**20  # per file the program writes (in the sandbox's memory)
MAX_WRITTEN_FILES = 100
SHOWN_BYTES = 10_000  # of stdout and of stderr, in the observation
MAX_CODE_CHARS = 100_000
MAX_TIMEOUT_S = 60.0
MAX_REPORT_BYTES = 16 * SHOWN_BYTES + 2 * MAX_CODE_CHARS  # JSON escapes may grow the shown text


class Value(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["int", "float", "bool", "str", "other"]
    text: str


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    ok: bool
    value: Value | None = None
    error: str | None = None


class Report(BaseModel):
    """What the worker posts back (`sandbox/worker.mjs`), after the program ran."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["result"]
    result: str  # an Outcome as JSON, from the driver
    stdout: str
    stdout_bytes: int
    stdout_overflow: bool
    stderr: str
    stderr_bytes: int
    stderr_overflow: bool


def _failure(message: str, output: str = "") -> ToolResult:
    text = f"{output}\nerror: {message}" if output else f"error: {message}"
    return ToolResult(tool="python", ok=False, output=text, error=message)


def _shown(text: str, size: int, label: str) -> str:
    text = text[:SHOWN_BYTES]
    if size > len(text.encode()):
        text += f"\n[... {size - len(text.encode())} more bytes of {label} not shown]"
    return text


def _decode_value(value: Value | None) -> Any:
    if value is None:
        return None
    decoders = {"int": int, "float": float, "bool": lambda t: t == "True"}
    try:
        return decoders.get(value.kind, str)(value.text)
    except ValueError:  # an int past Python's digit limit, a forged "float"
        return value.text


def parse_report(raw: bytes) -> tuple[Report, Outcome] | None:
    """The last line the sandbox printed, validated; None when it is not a well-formed report."""
    lines = raw.rstrip(b"\n").rsplit(b"\n", 1)
    try:
        message = json.loads(lines[-1])
        if not isinstance(message, dict) or message.get("kind") != "report":
            return None
        report = Report.model_validate(message.get("report"))
        return report, Outcome.model_validate_json(report.result)
    except (ValueError, ValidationError, RecursionError, MemoryError):
        return None


def _flood_line(raw: bytes) -> dict[str, Any] | None:
    """The runner's own flood line, if it printed one. It may follow a call forwarded just before
    (both read at once), so each line is looked at; only the runner writes top-level kinds, model
    code's messages arrive nested in a report, so a forged one is not taken for it."""
    for line in raw.split(b"\n")[:3]:
        if line.startswith(b'{"kind":"flood"'):
            try:
                message = json.loads(line)
            except ValueError:
                return None
            return message if isinstance(message, dict) else None
    return None


def _stopped_error(stopped: str, raw: bytes, timeout_s: float) -> str:
    if stopped == "timeout" or b'"kind":"timeout"' in raw[-100:]:
        return f"timed out after {timeout_s:g} s; the program was killed"
    flood = _flood_line(raw)
    if flood is not None:
        return f"callback limit exceeded: {flood.get('error', '')}; the program was stopped"
    return f"output limit exceeded: the program flooded the sandbox's channel (over {MAX_REPORT_BYTES} bytes)"


@dataclass(frozen=True)
class Callbacks:
    """Lets the program call the host (`import reasoner_host; reasoner_host.call(text)` blocks
    until `answer(text)` gives (ok, reply); not ok raises in the program). At most `max_calls`
    calls of `max_call_bytes` characters, answers cut at `max_answer_bytes`: a program past a
    bound is stopped (a failed run), so it cannot flood the host."""

    answer: Callable[[str], tuple[bool, str]]
    max_calls: int = 50
    max_call_bytes: int = 4000
    max_answer_bytes: int = 4000


def run_python(code: str, timeout_s: float = 5.0, callbacks: Callbacks | None = None) -> ToolResult:
    """Run Python code in the sandbox; return its stdout and the value of its last expression
    (or of `solution()`), or the error. With `callbacks`, the program may call the host."""
    if len(code) > MAX_CODE_CHARS:
        return _failure(f"the code is too long ({len(code)} characters, limit {MAX_CODE_CHARS})")
    if not math.isfinite(timeout_s):
        return _failure(f"the timeout must be a number of seconds, not {timeout_s!r}")
    timeout_s = min(max(timeout_s, 0.1), MAX_TIMEOUT_S)
    try:
        runner = pool.take(MEMORY_BYTES)
    except (SandboxUnavailable, OSError) as exc:
        return _failure(f"the Python sandbox is unavailable, so the code was not run: {exc} (to install: {HOW_TO_INSTALL})")
    job = {"code": code, "timeout_ms": int(timeout_s * 1000) + 1000, "value_cap": SHOWN_BYTES,
           "memory_bytes": MEMORY_BYTES, "max_output_bytes": OUTPUT_BYTES, "shown_bytes": SHOWN_BYTES,
           "file_bytes": FILE_BYTES, "max_files": MAX_WRITTEN_FILES}
    if callbacks is not None:
        job["callbacks"] = {"max_calls": callbacks.max_calls, "max_call_bytes": callbacks.max_call_bytes,
                            "max_answer_bytes": callbacks.max_answer_bytes}
    try:
        if callbacks is None:
            raw, stopped = runner.run(job, timeout_s, MAX_REPORT_BYTES)
        else:
            raw, stopped = runner.converse(job, timeout_s, MAX_REPORT_BYTES, callbacks.answer)
    finally:
        pool.release(runner)
    if stopped or raw.startswith(b'{"kind":"flood"'):
        return _failure(_stopped_error(stopped or "flood", raw, timeout_s))
    parsed = parse_report(raw)
    if parsed is None:
        return _failure(_unreadable(raw, runner.proc.returncode, runner.stderr))
    report, outcome = parsed
    out = _shown(report.stdout, report.stdout_bytes, "stdout")
    err = _shown(report.stderr, report.stderr_bytes, "stderr")
    if report.stdout_overflow or report.stderr_overflow:
        error: str | None = f"output limit exceeded: more than {OUTPUT_BYTES // 2**20} MB written to stdout or stderr"
    else:
        error = None if outcome.ok else (outcome.error or "the program failed")[: 2 * SHOWN_BYTES]
    if error and "Array buffer allocation failed" in error:  # a file outgrew the memory left
        error = f"out of memory: {error} (the program's files are kept in the sandbox's memory)"
    value = None if error else _decode_value(outcome.value)

    parts = [out.rstrip("\n")] if out else []
    if err:
        parts.append("stderr:\n" + err.rstrip("\n"))
    if error:
        parts.append(f"error: {error}")
    elif value is not None:
        parts.append(f"result: {value}")
    if not parts:
        parts.append("(no output: print() something or end with an expression)")
    return ToolResult(tool="python", ok=error is None, output="\n".join(parts), value=value, error=error)


def _unreadable(raw: bytes, returncode: int | None, stderr: bytes) -> str:
    if b"out of memory" in stderr or b"Reached heap limit" in stderr:
        return f"out of memory: the program went past the sandbox's limit ({MEMORY_BYTES // 2**20} MB)"
    if returncode == 0 and raw.rstrip().endswith(b'{"kind":"ready"}'):
        return "the program ended the sandbox before reporting a result"
    return f"the program's result could not be read (the sandbox exited with status {returncode})"


@tool(
    "python",
    "Run Python 3 code (standard library only, no network, an in-memory scratch folder, "
    "5 s limit). Returns what it printed and the value of its last expression, or of solution() if defined.",
)
def python(code: str) -> ToolResult:
    return run_python(code)
