"""Run model-written Python in a separate, limited process and report what it did.

`run_python(code)` starts `python -I -S -B` (isolated: no environment variables, no user or
site packages, no bytecode writes) in a fresh temporary directory with an almost empty
environment (so API keys in ours never reach it). A bootstrap script, run before the code:
- sets resource limits: CPU seconds, 512 MB address space, 1 MB per written file (this also
  caps stdout and stderr, which go to files), no core dumps, and no new processes or
  threads where RLIMIT_NPROC applies (it does not apply to root);
- installs an audit hook (PEP 578) that refuses: network (`socket.*`); starting processes
  (`os.system`, `os.exec*`, `os.spawn*`, `os.fork`, `os.posix_spawn`, `pty.spawn`, and
  importing `_posixsubprocess`, so `subprocess` cannot be imported); signals to other
  processes; reading files outside the working directory and the standard library; writing,
  renaming, deleting or linking anything outside the working directory, `..` in paths,
  `dir_fd`, symlinks and hard links, more than 100 written files; native-code escape
  hatches (`ctypes`, sub-interpreters, `_testcapi`, sqlite, ssl, dbm-like and terminal
  modules: refused imports raise ImportError, so optional imports degrade as usual);
  raising resource limits, adding audit hooks, tracing, and gc object walks;
- runs the code in a fresh `__main__`, then reports the value of its last expression (as a
  REPL would) or, when there is none, of `solution()` if the code defines it (PAL style).
The parent waits with a wall-clock timeout, then kills the child's whole process group.
Threads: `Tool` runs this in a worker thread, so no `preexec_fn` (unsafe with threads); the
limits are set by the child itself before any of the code runs.

Residual risks, honestly: audit hooks are not a security boundary (PEP 578 says so). The
hook is written to be hard to disarm (everything it uses is bound when it is installed;
`gc`, tracing and `ctypes` are refused), but CPython has un-audited ways to act. The worst
ones (`os.mknod`, `os.mkfifo`, `os.pidfd_open` with `signal.pidfd_send_signal`,
`os.setpriority`, `os.sched_set*`, `time.clock_settime`) are deleted before the code runs,
yet a fresh copy of a builtin module (`_imp.create_builtin`) brings them back. The child
runs as our user (root here, where RLIMIT_NPROC is also ignored), so determined code could
then signal any process, ours included, or make a device node in its directory and open
it. Also: `os.stat`, `os.access` and `os.readlink` still tell whether any path exists; a
crafted code object can crash the interpreter (only the child); symlinks already inside
the standard library could be followed for reads; threads are allowed. POSIX only. For
hostile input, run the application as an unprivileged user, in a container or a VM.
"""

from __future__ import annotations

import ast
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import IO, Any

from reasoner.tools.base import ToolResult, tool

MEMORY_BYTES = 512 * 2**20
FILE_BYTES = 2**20  # per file the code writes, stdout and stderr included
SHOWN_BYTES = 10_000  # of stdout and of stderr, in the observation
MAX_CODE_CHARS = 100_000
MAX_TIMEOUT_S = 60.0
MAX_WRITTEN_FILES = 100

# Runs inside the child as `python -c`: limits, then the audit hook, then the model's code.
_BOOTSTRAP = r'''
import _ast, errno, itertools, os, posix, resource, sys, types  # not ast or json: slow to import

UNAUDITED_OS = ("mknod", "mkfifo", "pidfd_open", "setpriority", "sched_setaffinity", "sched_setscheduler",
                "sched_setparam")

workdir, result_fd = sys.argv[1], int(sys.argv[2])
cpu_s, memory, file_bytes, max_files, value_cap = map(int, sys.argv[3:8])
source = sys.stdin.buffer.read().decode("utf-8", "replace")
sys.stdin = open(os.devnull)  # input() sees end of file instead of our code

for limit, value in ((resource.RLIMIT_CPU, (cpu_s, cpu_s + 1)), (resource.RLIMIT_AS, (memory, memory)),
                     (resource.RLIMIT_FSIZE, (file_bytes, file_bytes)), (resource.RLIMIT_CORE, (0, 0)),
                     (resource.RLIMIT_NPROC, (0, 0)), (resource.RLIMIT_NOFILE, (64, 64))):
    resource.setrlimit(limit, value)


def install(writable, readable, max_files):
    # A traceback from a refusal reaches this hook's frame, and builtins and module
    # attributes are shared with the model's code, so the hook holds only immutable values
    # (str, tuple, frozenset, builtin functions) and calls no builtin by name: the methods
    # of str and tuple cannot be patched.
    Denied, Unimportable = PermissionError, ImportError  # optional imports catch ImportError
    str_, bytes_, int_, type_ = str, bytes, int, type
    getcwd, created = posix.getcwd, itertools.count(1).__next__  # a count can only go up
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    writable = tuple(root + "/" for root in writable)
    readable = tuple(root + "/" for root in readable) + writable
    processes = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn",
                           "os.fork", "os.forkpty", "pty.spawn", "os.startfile"})
    refused = (
        ("os.kill", "sending signals"), ("os.killpg", "sending signals"),
        ("signal.pthread_kill", "sending signals"), ("os.link", "creating links"),
        ("os.symlink", "creating links"), ("resource.setrlimit", "changing resource limits"),
        ("resource.prlimit", "changing resource limits"), ("sys.addaudithook", "adding audit hooks"),
        ("sys.settrace", "tracing"), ("sys.setprofile", "tracing"), ("gc.get_objects", "walking the heap"),
        ("gc.get_referrers", "walking the heap"), ("gc.get_referents", "walking the heap"),
        ("cpython.PyInterpreterState_New", "creating sub-interpreters"),
    )
    modules = frozenset({
        "_ctypes", "_ctypes_test", "_posixsubprocess", "_posixshmem", "_multiprocessing", "_sqlite3",
        "_ssl", "_tkinter", "_curses", "_curses_panel", "_dbm", "_gdbm", "_testcapi", "_testinternalcapi",
        "_testbuffer", "_testclinic", "_testmultiphase", "_testimportmultiple", "_xxsubinterpreters",
        "_xxinterpchannels", "_xxtestfuzz", "nis", "ossaudiodev", "readline", "syslog", "spwd", "pwd",
        "grp", "termios", "posix",
    })
    # (event, writes?, indexes of its path arguments, indexes of its dir_fd arguments)
    path_events = (
        ("os.mkdir", True, (0,), (2,)), ("os.rmdir", True, (0,), (1,)), ("os.remove", True, (0,), (1,)),
        ("os.rename", True, (0, 1), (2, 3)), ("os.chmod", True, (0,), (2,)), ("os.chown", True, (0,), (3,)),
        ("os.utime", True, (0,), (3,)), ("os.truncate", True, (0,), ()), ("os.setxattr", True, (0,), ()),
        ("os.removexattr", True, (0,), ()), ("os.chdir", True, (0,), ()), ("os.listdir", False, (0,), ()),
        ("os.scandir", False, (0,), ()), ("os.listxattr", False, (0,), ()), ("os.getxattr", False, (0,), ()),
    )
    path_event_names = frozenset(row[0] for row in path_events)

    def hook(event, args):
        checks = []  # (path, writes?, may it be relative?)
        if event == "open":
            path, mode, flags = args
            write = type_(flags) is not int_ or flags & write_flags != 0
            # os.open (mode None) may carry a dir_fd the event does not show: no relative paths.
            checks = [(path, write, mode is not None)]
            if write and created() > max_files:
                raise Denied(f"sandbox: more than {max_files} files opened for writing")
        elif event.startswith("socket."):
            raise Denied(f"sandbox: network access is not allowed ({event})")
        elif event in processes:
            raise Denied(f"sandbox: starting processes is not allowed ({event})")
        elif event == "import":
            name = args[0]
            if type_(name) is not str_:
                raise Unimportable("sandbox: module names must be str")
            for part in name.split("."):
                if part in modules:
                    raise Unimportable(f"sandbox: importing {name} is not allowed")
        elif event in path_event_names:
            for name, write, paths, dir_fds in path_events:
                if name == event:
                    for i in dir_fds:
                        if args[i] is not None and args[i] != -1:
                            raise Denied(f"sandbox: dir_fd is not allowed ({event})")
                    checks = [(args[i], write, True) for i in paths]
            if event == "os.mkdir" and created() > max_files:
                raise Denied(f"sandbox: more than {max_files} files or directories created")
        else:
            for name, why in refused:
                if name == event:
                    raise Denied(f"sandbox: {why} is not allowed ({event})")
        for path, write, relative_ok in checks:
            if type_(path) is int_:
                continue  # a descriptor: opening it was checked
            if path is None:
                path = "."
            if type_(path) is bytes_:
                path = path.decode("utf-8", "surrogateescape")
            if type_(path) is not str_:
                raise Denied("sandbox: give paths as str")
            if not path.startswith("/"):
                if not relative_ok:
                    raise Denied("sandbox: os.open needs an absolute path here (or use open())")
                path = getcwd() + "/" + path
            parts = path.split("/")
            if ".." in parts:
                raise Denied("sandbox: '..' is not allowed in paths")
            full = "/" + "/".join([part for part in parts if part and part != "."])
            if not (full + "/").startswith(writable if write else readable):
                if write:
                    raise Denied(f"sandbox: writing {full} is not allowed; only the working directory is writable")
                raise Denied(f"sandbox: reading {full} is not allowed; only the working directory "
                             "and the Python standard library are readable")

    sys.addaudithook(hook)


def encode(value):
    kind = type(value).__name__
    try:
        text = repr(value) if kind == "float" else str(value)
    except Exception as exc:  # e.g. an int too long to print
        kind, text = "str", f"<unprintable {kind}: {exc}>"
    if len(text) > value_cap:
        kind, text = "str", text[:value_cap] + "... [truncated]"
    return {"kind": kind, "text": text}


def describe(exc):
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<code>":
            line = tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename == "<code>":
        line = exc.lineno
    try:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except Exception:
        message = type(exc).__name__
    if isinstance(exc, MemoryError):
        message += f" (out of memory: the limit is {memory // 2**20} MB)"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        message = f"output limit exceeded: more than {file_bytes // 2**20} MB written to stdout, stderr or a file"
    message = message[:value_cap]  # an exception message may be megabytes long
    lines = source.splitlines()
    if line and 0 < line <= len(lines):
        return f"line {line}: {lines[line - 1].strip()}\n{message}"
    return message


# These raise no audit event yet act beyond the child (device nodes, signals to any pid,
# other processes' scheduling, the clock), so they go. Not for good: see the docstring.
import _signal, time
for module, names in ((os, UNAUDITED_OS), (posix, UNAUDITED_OS), (_signal, ("pidfd_send_signal",)),
                      (time, ("clock_settime", "clock_settime_ns"))):
    for name in names:
        if hasattr(module, name):
            delattr(module, name)
main = types.ModuleType("__main__")
sys.modules["__main__"] = main
# Both spellings of each root: imports use sys.path as written, getcwd() the resolved path.
roots = [p for p in sys.path if p and os.path.isdir(p)]
install({workdir, os.path.realpath(workdir)}, {*roots, *map(os.path.realpath, roots)}, max_files)
del install

result = {"ok": True}
try:
    tree = compile(source, "<code>", "exec", _ast.PyCF_ONLY_AST)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], _ast.Expr) else None
    exec(compile(tree, "<code>", "exec"), main.__dict__)
    if last is not None:
        value = eval(compile(_ast.Expression(last.value), "<code>", "eval"), main.__dict__)
    elif callable(main.__dict__.get("solution")):
        value = main.__dict__["solution"]()
    else:
        value = None
    if value is not None:
        result["value"] = encode(value)
    sys.stdout.flush()
except SystemExit as exc:
    if exc.code not in (None, 0):
        result = {"ok": False, "error": f"SystemExit: exited with status {exc.code}"}
except BaseException as exc:
    result = {"ok": False, "error": describe(exc)}
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except Exception:
        pass
os.write(result_fd, repr(result).encode())  # a dict of str and bool: the parent reads it with literal_eval
os._exit(0)  # skip interpreter teardown: the model's objects may misbehave in it
'''


def _read_capped(f: IO[bytes], label: str) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    text = f.read(SHOWN_BYTES).decode("utf-8", "replace")
    if size > SHOWN_BYTES:
        text += f"\n[... {size - SHOWN_BYTES} more bytes of {label} not shown]"
    return text


def _decode_value(value: dict[str, str] | None) -> Any:
    if value is None:
        return None
    kind, text = value["kind"], value["text"]
    decoders = {"int": int, "float": float, "bool": lambda t: t == "True", "str": str}
    try:
        return decoders.get(kind, str)(text)
    except ValueError:
        return text


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether the child exited within the timeout. A pidfd wakes us the moment it exits;
    Popen.wait(timeout) polls with sleeps of up to 50 ms, a visible cost per call."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux, or an old kernel
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
    finally:
        os.close(pidfd)
    return bool(ready)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # The child leads its own process group (start_new_session): kill the group, which also
    # ends anything it started should the hook have been bypassed, then the child itself in
    # case it left the group with setsid(). After a normal exit the group is usually gone.
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def _signal_error(returncode: int, cpu_s: int) -> str:
    sig = -returncode
    if sig in (signal.SIGXCPU, signal.SIGKILL):
        return f"CPU time limit exceeded ({cpu_s} s); the program was killed"
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
    return f"the program crashed ({name})"


def run_python(code: str, timeout_s: float = 5.0) -> ToolResult:
    """Run Python code in a sandbox; return its stdout and the value of its last expression
    (or of `solution()`), or the error."""
    if len(code) > MAX_CODE_CHARS:
        message = f"the code is too long ({len(code)} characters, limit {MAX_CODE_CHARS})"
        return ToolResult(tool="python", ok=False, output=f"error: {message}", error=message)
    timeout_s = min(max(timeout_s, 0.1), MAX_TIMEOUT_S)
    cpu_s = math.ceil(timeout_s) + 1
    workdir = tempfile.mkdtemp(prefix="reasoner-python-")
    files = [tempfile.TemporaryFile() for _ in range(4)]
    stdin, stdout, stderr, result_file = files
    try:
        stdin.write(code.encode("utf-8", "surrogatepass"))
        stdin.seek(0)
        args = [str(a) for a in (workdir, result_file.fileno(), cpu_s, MEMORY_BYTES, FILE_BYTES,
                                 MAX_WRITTEN_FILES, SHOWN_BYTES)]
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", _BOOTSTRAP, *args],
            stdin=stdin, stdout=stdout, stderr=stderr, cwd=workdir,
            env={"PATH": os.defpath, "HOME": workdir, "TMPDIR": workdir},
            pass_fds=(result_file.fileno(),), start_new_session=True,
        )
        timed_out = not _wait(proc, timeout_s)
        _kill(proc)
        out, err = _read_capped(stdout, "stdout"), _read_capped(stderr, "stderr")
        result_file.seek(0)
        raw = result_file.read(4 * SHOWN_BYTES)
    finally:
        for f in files:
            f.close()
        shutil.rmtree(workdir, ignore_errors=True)

    try:
        result: dict[str, Any] = ast.literal_eval(raw.decode("utf-8", "replace")) if raw else {}
        if not isinstance(result, dict):
            raise ValueError(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        result = {"ok": False, "error": "the program's result could not be read"}
    if timed_out:
        error: str | None = f"timed out after {timeout_s:g} s; the program was killed"
    elif proc.returncode < 0:
        error = _signal_error(proc.returncode, cpu_s)
    elif not result and proc.returncode != 0:
        error = f"the program exited with status {proc.returncode}"
    else:
        error = None if result.get("ok", True) else str(result.get("error"))
    value = None if error else _decode_value(result.get("value"))

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


@tool(
    "python",
    "Run Python 3 code (standard library only, no network or files outside a scratch folder, "
    "5 s limit). Returns what it printed and the value of its last expression, or of solution() if defined.",
)
def python(code: str) -> ToolResult:
    return run_python(code)
