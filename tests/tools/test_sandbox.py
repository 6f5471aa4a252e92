"""The Python sandbox: legitimate code works, its limits hold, and whatever comes back from it is
validated. Escape attempts are in test_sandbox_hostile.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reasoner.tools import python, run_python
from reasoner.tools import python_sandbox, sandbox_runtime
from reasoner.tools.base import ToolResult

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the sandbox is POSIX-only")

ESCAPE_FILE = Path("/tmp/escape-test-file")


@pytest.fixture(autouse=True, scope="module")
def installed() -> None:
    # The first use fetches Pyodide and takes the snapshot (seconds): not part of any run's timing.
    sandbox_runtime.installation()


@pytest.fixture(autouse=True)
def parent_stays_healthy():  # type: ignore[no-untyped-def]
    ESCAPE_FILE.unlink(missing_ok=True)
    pid, cwd, children = os.getpid(), os.getcwd(), _children()
    yield
    assert not ESCAPE_FILE.exists(), "the code wrote outside its working directory"
    assert (os.getpid(), os.getcwd()) == (pid, cwd)
    assert _children() == children, "a sandboxed process outlived its run"


def _children() -> set[int]:
    """Our child processes, less the pool's runners started ahead (waiting for a job, not leaked)."""
    sandbox_runtime.pool.settle()
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            found.update(int(pid) for pid in (task / "children").read_text().split())
    return found - sandbox_runtime.pool.pids()


@dataclass(frozen=True)
class Run:
    """One program's run, as the parent saw it."""

    budget: float  # the seconds the parent allowed the program before killing it
    stopped: str | None  # why the parent stopped it ("timeout", "flood"), None when it ended itself
    returncode: int | None  # the runner's exit status, once the parent is done with it
    raw: bytes  # what it printed


#: The runs of the test under way, recorded by the `runs` fixture.
RUNS: list[Run] = []


@pytest.fixture(autouse=True)
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Run]]:
    """Records every program run (`Runner.run`): how long the parent let it run, and how it ended.
    Tests check those rather than a stopwatch, which a loaded CI machine makes unreliable."""
    real = sandbox_runtime.Runner.run

    def recorded(self: sandbox_runtime.Runner, job: dict[str, object], timeout_s: float, max_bytes: int) -> tuple[bytes, str | None]:
        raw, stopped = real(self, job, timeout_s, max_bytes)
        RUNS.append(Run(timeout_s, stopped, self.proc.returncode, raw))
        return raw, stopped

    monkeypatch.setattr(sandbox_runtime.Runner, "run", recorded)
    RUNS.clear()
    yield RUNS
    RUNS.clear()


def run(code: str, timeout_s: float = 5.0) -> ToolResult:
    before = len(RUNS)
    result = run_python(code, timeout_s)
    # The parent gave the program one run of its timeout, no more (then it kills it; see
    # test_infinite_loop_times_out), and was done with its process when it returned.
    done, allowed = RUNS[before:], min(max(timeout_s, 0.1), python_sandbox.MAX_TIMEOUT_S)
    assert [r.budget for r in done] == [allowed], "the parent allowed other than the program's timeout"
    assert done[0].returncode is not None, "the parent returned with the program's process still running"
    return result


def denied(code: str, message: str) -> ToolResult:
    result = run(code)
    assert not result.ok, result.output
    assert result.error is not None and message in result.error, result.output
    assert message in result.output
    return result


# Legitimate code


def test_final_expression_value() -> None:
    result = run("x = 6\nx * 7")
    assert result.ok and result.value == 42 and result.output == "result: 42"


def test_solution_function_pal_style() -> None:
    code = "from fractions import Fraction\n\ndef solution():\n    return Fraction(1, 3) + Fraction(1, 6)\n"
    result = run(code)
    assert result.ok and result.value == "1/2"


def test_stdout_and_stdlib_imports() -> None:
    code = (
        "import math, statistics, fractions, datetime, decimal, itertools, collections, re, random\n"
        "print(math.factorial(10))\n"
        "print(statistics.mean([1, 2, 3, 4]))\n"
        "print(fractions.Fraction(3, 4) * 2)\n"
        "print(datetime.date(2024, 3, 1) - datetime.timedelta(days=1))\n"
        "print(decimal.Decimal('0.1') + decimal.Decimal('0.2'))\n"
    )
    result = run(code)
    assert result.ok, result.output
    assert result.output.splitlines() == ["3628800", "2.5", "3/2", "2024-02-29", "0.3"]
    assert result.value is None


def test_values_keep_simple_types() -> None:
    assert run("1.5").value == 1.5
    assert run("True").value is True
    assert run("'text'").value == "text"
    assert run("[1, 2]").value == "[1, 2]"
    assert run("print(1)").output == "1"  # print() returns None: no result line
    assert "no output" in run("x = 1").output


def test_files_inside_the_working_directory_work() -> None:
    code = "open('notes.txt', 'w').write('hello')\nimport os, tempfile\ntempfile.mkstemp()\nopen('notes.txt').read()"
    result = run(code)
    assert result.ok and result.value == "hello", result.output


def test_errors_name_the_line() -> None:
    result = run("def f(x):\n    return x / 0\n\nf(1)")
    assert not result.ok
    assert result.error == "line 2: return x / 0\nZeroDivisionError: division by zero"
    syntax = run("x = (1,\ny = 2")
    assert not syntax.ok and "SyntaxError" in (syntax.error or "")


def test_stdout_is_kept_before_an_error() -> None:
    result = run("print('partial')\nraise ValueError('boom')")
    assert result.output.startswith("partial\n") and "ValueError: boom" in result.output


def test_input_and_exit() -> None:
    assert "EOFError" in (run("input()").error or "")
    assert "exited with status 3" in (run("import sys\nsys.exit(3)").error or "")
    assert run("import sys\nprint('bye')\nsys.exit(0)").ok


def test_working_directory_is_fresh_and_removed() -> None:
    first, second = run("import os\nos.getcwd()").value, run("import os\nos.getcwd()").value
    assert first != second and "reasoner-python-" in first
    assert not os.path.exists(first) and not os.path.exists(second)


async def test_concurrent_runs() -> None:
    results = await asyncio.gather(*(python(f"{i} * 2") for i in range(4)))
    assert [r.value for r in results] == [0, 2, 4, 6]


async def test_tool_wrapper() -> None:
    result = await python("sum(range(5))")
    assert result.ok and result.value == 10 and result.tool == "python"
    assert (await python({"code": "print('hi')"})).output == "hi"


# Limits


def test_memory_bomb() -> None:
    denied("b = bytearray(10**9)", "MemoryError (out of memory: the limit is 512 MB)")
    denied("a = []\nwhile True:\n    a.append(' ' * 10**7)", "MemoryError")


def test_infinite_loop_times_out(runs: list[Run]) -> None:
    result = run_python("while True:\n    pass", timeout_s=1.0)
    assert not result.ok and "timed out after 1 s" in (result.error or "")
    # The parent's own deadline, at the 1 s it allowed, ended the wait and it killed the program:
    # it did not wait for the sandbox's fallback timer (a second later) to end it.
    (only,) = runs
    assert (only.budget, only.stopped) == (1.0, "timeout")
    assert only.returncode == -signal.SIGKILL
    assert b'"kind":"timeout"' not in only.raw


def test_sleeping_program_is_killed() -> None:
    result = run_python("import time, signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)", 0.5)
    assert not result.ok and "timed out" in (result.error or "")


def test_huge_output_is_capped() -> None:
    result = denied('print("x" * 10**8)', "output limit exceeded")
    assert len(result.output) < 11_000 and "more bytes of stdout not shown" in result.output
    assert result.output.startswith("x" * 1000)  # the start of an oversized write is still shown
    looped = denied('while True:\n    print("x" * 1000)', "output limit exceeded")
    assert len(looped.output) < 11_000


def test_huge_file_is_capped() -> None:
    denied("open('big', 'w').write('x' * 10**7)", "file size limit exceeded: a file may hold 1 MB")
    denied("f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * 10**5)", "file size limit exceeded")
    denied("open('a', 'w').close()\nimport os\nos.truncate('a', 10**8)", "file size limit exceeded")


def test_too_many_files() -> None:
    denied("for i in range(200):\n    open(f'f{i}', 'w').close()", "more than 100 files")


def test_huge_exception_message_is_capped() -> None:
    result = denied("raise ValueError('x' * 10**6)", "ValueError: xxx")
    assert len(result.output) < 25_000


def test_code_size_limit() -> None:
    result = run_python("x = 1\n" * 60_000)
    assert not result.ok and "too long" in result.output


def test_bad_timeout_is_refused() -> None:
    result = run_python("1", float("nan"))
    assert not result.ok and "timeout" in (result.error or "")


# What comes back is validated


def test_forged_results_are_failed_runs() -> None:
    # Once fd 3 carried the result: writing a dict there made run_python raise TypeError.
    fd_route = "import os\nfor fd in range(3, 12):\n    try:\n        os.write(fd, b\"{'ok': True, 'value': 5}\")\n    except OSError:\n        pass\nos._exit(0)"
    # Now the worker's message to the main thread carries it: post a malformed one.
    js_route = "import js\njs.postMessage(js.JSON.parse('{\"kind\": \"result\", \"result\": 5}'))\nimport time\ntime.sleep(2)"
    for code in (fd_route, js_route):
        result = run(code)
        assert isinstance(result, ToolResult) and not result.ok and result.value is None, result.output


@pytest.mark.parametrize("raw", [
    b"", b"garbage", b'{"kind":"report","report":{"ok":true,"value":5}}',
    b'{"kind":"report","report":5}', b'[1, 2]', b'{"kind":"report"}', b"{" * 100_000,
    json.dumps({"kind": "report", "report": {"kind": "result", "result": '{"ok": true, "value": 5}', "stdout": "",
                "stdout_bytes": 0, "stdout_overflow": False, "stderr": "", "stderr_bytes": 0,
                "stderr_overflow": False}}).encode(),
    json.dumps({"kind": "report", "report": {"kind": "result", "result": '{"ok": true, "value": {"kind": "int", '
                '"text": 5}}', "stdout": "", "stdout_bytes": 0, "stdout_overflow": False, "stderr": "",
                "stderr_bytes": 0, "stderr_overflow": False}}).encode(),
])
def test_malformed_reports_are_rejected(raw: bytes) -> None:
    assert python_sandbox.parse_report(raw) is None


def test_a_wellformed_report_is_read() -> None:
    report = {"kind": "result", "result": '{"ok": true, "value": {"kind": "int", "text": "5"}}', "stdout": "hi\n",
              "stdout_bytes": 3, "stdout_overflow": False, "stderr": "", "stderr_bytes": 0, "stderr_overflow": False}
    parsed = python_sandbox.parse_report(b"junk the program printed\n" + json.dumps({"kind": "report", "report": report}).encode())
    assert parsed is not None and parsed[1].value is not None and parsed[1].value.text == "5"


# No sandbox: no run


def test_fails_closed_without_deno(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sandbox_runtime, "_installed", None)
    monkeypatch.setattr(sandbox_runtime, "pool", sandbox_runtime.Pool(0))
    monkeypatch.setattr(python_sandbox, "pool", sandbox_runtime.pool)
    monkeypatch.setenv("REASONER_SANDBOX_HOME", str(tmp_path))
    monkeypatch.setenv("REASONER_DENO", str(tmp_path / "no-such-deno"))
    installs: list[object] = []
    install = sandbox_runtime.install

    def counted(*args: object, **kwargs: object) -> sandbox_runtime.Installation:
        installs.append(args)
        return install(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sandbox_runtime, "install", counted)
    result = run_python(f"open('{ESCAPE_FILE}', 'w').write('ran')")
    assert not result.ok and "sandbox is unavailable, so the code was not run" in (result.error or ""), result.output
    assert "pip install" in result.output  # says how to get it
    assert not ESCAPE_FILE.exists()
    assert len(installs) == 1
    again = run_python("1")  # the failure is remembered: no second install attempt per program
    assert not again.ok and "sandbox is unavailable" in (again.error or "")
    assert len(installs) == 1


def test_pyodide_version_is_pinned_once() -> None:
    for script in sandbox_runtime.CODE_DIR.glob("*.mjs"):
        text = script.read_text()
        if "npm:pyodide" in text:
            assert f"npm:pyodide@{sandbox_runtime.PYODIDE_VERSION}\"" in text, script


def test_runners_end_when_the_caller_is_killed(tmp_path: Path) -> None:
    # The caller dies mid-run (SIGKILL): its runners, busy or waiting, must not outlive it.
    caller = (
        "import threading, time\n"
        "from reasoner.tools import run_python, sandbox_runtime\n"
        "threading.Thread(target=run_python, args=('while True:\\n    pass', 60), daemon=True).start()\n"
        "time.sleep(3)\n"
        "print(' '.join(map(str, sandbox_runtime.pool.pids())), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", caller], stdout=subprocess.PIPE, cwd=tmp_path)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()
    pids = [int(pid) for pid in line.split()]
    assert pids, "the caller had no runner"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert not alive, f"runners {alive} outlived their caller"


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return "gone"
