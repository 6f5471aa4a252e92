"""The Python sandbox: legitimate code works, and every escape attempt is stopped with a clear
message while this (parent) process stays healthy."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from reasoner.tools import python, run_python
from reasoner.tools.base import ToolResult

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the sandbox is POSIX-only")

ESCAPE_FILE = Path("/tmp/escape-test-file")


@pytest.fixture(autouse=True)
def parent_stays_healthy():  # type: ignore[no-untyped-def]
    ESCAPE_FILE.unlink(missing_ok=True)
    pid, cwd, children = os.getpid(), os.getcwd(), _children()
    yield
    assert not ESCAPE_FILE.exists(), "the code wrote outside its working directory"
    assert (os.getpid(), os.getcwd()) == (pid, cwd)
    assert _children() == children, "a sandboxed process outlived its run"


def _children() -> set[str]:
    path = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    return set(path.read_text().split()) if path.exists() else set()


def run(code: str, timeout_s: float = 5.0) -> ToolResult:
    start = time.perf_counter()
    result = run_python(code, timeout_s)
    # Generous: only a real hang should fail this, not a loaded CI machine.
    assert time.perf_counter() - start < timeout_s + 10, "the parent waited far past the timeout"
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


# Escape attempts


def test_write_outside_working_directory() -> None:
    denied(f"open('{ESCAPE_FILE}', 'w').write('x')", f"writing {ESCAPE_FILE} is not allowed")
    denied(f"import pathlib\npathlib.Path('{ESCAPE_FILE}').write_text('x')", "is not allowed")
    denied(f"import os\nos.open('{ESCAPE_FILE}', os.O_WRONLY | os.O_CREAT)", "is not allowed")
    denied(f"import shutil\nopen('a', 'w').close()\nshutil.copy('a', '{ESCAPE_FILE}')", "is not allowed")
    denied(f"import os\nopen('a', 'w').close()\nos.rename('a', '{ESCAPE_FILE}')", "is not allowed")
    denied("import os\nos.mkdir('/tmp/escape-test-dir')", "writing /tmp/escape-test-dir is not allowed")
    assert not Path("/tmp/escape-test-dir").exists()


def test_path_tricks() -> None:
    denied("open('../../etc/passwd')", "'..' is not allowed")
    denied(f"import os\nos.symlink('{ESCAPE_FILE}', 'link')", "creating links is not allowed")
    denied("import os\nos.chdir('/')", "is not allowed")
    denied("import os\nfd = os.open('/etc', os.O_RDONLY)", "reading /etc is not allowed")
    code = "import os\nd = os.open(os.path.dirname(os.__file__), os.O_RDONLY)\nos.open('x', os.O_WRONLY | os.O_CREAT, dir_fd=d)"
    denied(code, "os.open needs an absolute path")


def test_read_secrets() -> None:
    denied("open('/etc/passwd').read()", "reading /etc/passwd is not allowed")
    denied("open('/proc/self/environ').read()", "reading /proc/self/environ is not allowed")
    denied("import os\nos.listdir('/')", "reading / is not allowed")
    denied("import pwd", "importing pwd is not allowed")


def test_environment_is_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONER_TEST_SECRET", "sk-do-not-leak")
    result = run("import os\nsorted(os.environ)")
    assert result.ok and "REASONER_TEST_SECRET" not in str(result.value)


def test_network() -> None:
    denied("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 80))", "network access is not allowed")
    denied("import socket\nsocket.create_connection(('127.0.0.1', 80))", "network access is not allowed")
    denied("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')", "network access is not allowed")


def test_processes() -> None:
    denied(f"import os\nos.system('touch {ESCAPE_FILE}')", "starting processes is not allowed (os.system)")
    denied("import subprocess\nsubprocess.run(['true'])", "importing _posixsubprocess is not allowed")
    denied("import os\nos.execv('/bin/true', ['true'])", "starting processes is not allowed (os.exec)")
    denied("import os\nos.posix_spawn('/bin/true', ['true'], {})", "starting processes is not allowed")
    denied("import pty\npty.spawn('true')", "is not allowed")
    denied("import multiprocessing\nmultiprocessing.Process(target=print).start()", "is not allowed")


def test_fork_bomb() -> None:
    denied("import os\nwhile True:\n    os.fork()", "starting processes is not allowed (os.fork)")


def test_signals_to_the_parent() -> None:
    denied("import os\nos.kill(os.getppid(), 0)", "sending signals is not allowed")
    denied("import os\nos.killpg(os.getpgid(os.getppid()), 0)", "sending signals is not allowed")
    # Un-audited routes are removed (a speed bump only: see the module docstring).
    denied("import os\nos.pidfd_open(os.getppid())", "AttributeError")
    denied("import signal\nsignal.pidfd_send_signal", "AttributeError")
    denied("import os\nos.setpriority(os.PRIO_PROCESS, os.getppid(), 19)", "AttributeError")


def test_native_code_and_hook_tampering() -> None:
    denied("import ctypes", "importing _ctypes is not allowed")
    denied("import sqlite3", "importing _sqlite3 is not allowed")
    denied("import _xxsubinterpreters", "importing _xxsubinterpreters is not allowed")
    # CPython swallows a hook's refusal of sys.addaudithook: the call returns, the hook is never added.
    added = run("import sys\ncalls = []\nsys.addaudithook(lambda e, a: calls.append(e))\nimport json\nlen(calls)")
    assert added.ok and added.value == 0
    denied("import gc\ngc.get_objects()", "walking the heap is not allowed")
    denied("import sys\nsys.settrace(lambda *a: None)", "tracing is not allowed")
    denied("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "changing resource limits")
    denied("import os\nos.mknod('node')", "AttributeError")
    denied("import sys\ndel sys.modules['posix']\nimport posix", "importing posix is not allowed")


def test_patching_builtins_does_not_disarm_the_hook() -> None:
    code = "import builtins\nbuiltins.type = lambda x: str\nbuiltins.any = lambda x: False\nopen('/etc/passwd').read()"
    denied(code, "reading /etc/passwd is not allowed")


def test_hook_frame_exposes_nothing_mutable() -> None:
    # A refusal's traceback reaches the hook's frame; nothing in it may loosen the rules.
    code = (
        "try:\n    open('/etc/passwd')\nexcept PermissionError as e:\n    tb = e.__traceback__\n"
        "    while tb.tb_next:\n        tb = tb.tb_next\n    hook_locals = tb.tb_frame.f_locals\n"
        "kinds = {type(v).__name__ for v in hook_locals.values()}\n"
        "sorted(kinds - {'str', 'tuple', 'frozenset', 'int', 'bool', 'type', 'list', "
        "'builtin_function_or_method', 'method-wrapper'})"
    )
    result = run(code)
    assert result.ok and result.value == "[]", result.output


def test_too_many_files() -> None:
    denied("for i in range(200):\n    open(f'f{i}', 'w').close()", "more than 100 files")


def test_memory_bomb() -> None:
    denied("b = bytearray(4 * 10**9)", "MemoryError")


def test_infinite_loop_times_out() -> None:
    start = time.perf_counter()
    result = run_python("while True:\n    pass", timeout_s=1.0)
    assert time.perf_counter() - start < 6  # 1 s plus start-up, on a possibly loaded machine
    assert not result.ok and "timed out after 1 s" in (result.error or "")


def test_sleeping_child_is_killed() -> None:
    result = run_python("import time, signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)", 0.5)
    assert not result.ok and "timed out" in (result.error or "")


def test_huge_output_is_capped() -> None:
    result = denied('print("x" * 10**8)', "output limit exceeded")
    assert len(result.output) < 11_000 and "more bytes of stdout not shown" in result.output


def test_huge_file_is_capped() -> None:
    denied("open('big', 'w').write('x' * 10**7)", "output limit exceeded")


def test_huge_exception_message_is_capped() -> None:
    result = denied("raise ValueError('x' * 10**6)", "ValueError: xxx")
    assert len(result.output) < 11_000


def test_code_size_limit() -> None:
    result = run_python("x = 1\n" * 60_000)
    assert not result.ok and "too long" in result.output
