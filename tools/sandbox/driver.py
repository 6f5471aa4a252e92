"""Runs inside the sandbox (CPython on WebAssembly, in a Deno worker), never on the host.

`run_job` runs one model-written program in a fresh `__main__` and a fresh working directory
of the in-memory file system, and returns its outcome as JSON: the value of its last expression
(as a REPL shows it) or, when there is none, of `solution()` if the code defines it (PAL style).
No rules are enforced here: the boundary is the WebAssembly runtime and Deno's permissions, and
whatever this code is tricked into saying, the host validates it.
"""

import errno
import json
import linecache
import os
import sys
import tempfile
import types


def _encode(value, value_cap):
    kind = type(value).__name__
    try:
        text = repr(value) if kind == "float" else str(value)
    except Exception as exc:  # e.g. an int too long to print
        kind, text = "str", f"<unprintable {kind}: {exc}>"
    if kind not in ("int", "float", "bool", "str"):
        kind = "other"
    if len(text) > value_cap:
        kind, text = "str", text[:value_cap] + "... [truncated]"
    return {"kind": kind, "text": text}


def _source_lines(filename, source):
    # The job's own code, or code it compiled under another "<name>" and put in linecache (as
    # flowchart's wrapper does for the model's program), so an error names the model's line.
    if filename == "<code>":
        return source.splitlines()
    if filename.startswith("<") and filename in linecache.cache:
        return [text.rstrip("\n") for text in linecache.getlines(filename)]
    return None


def _describe(exc, source, value_cap, memory_bytes, limits):
    line, lines, tb, in_program = None, None, exc.__traceback__, False
    while tb is not None:  # the innermost frame of code the job supplied, a program's before its wrapper's
        name = tb.tb_frame.f_code.co_filename
        found = _source_lines(name, source)
        if found is not None and (name != "<code>" or not in_program):
            line, lines, in_program = tb.tb_lineno, found, in_program or name != "<code>"
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and isinstance(exc.filename, str):
        found = _source_lines(exc.filename, source)
        if found is not None:
            line, lines = exc.lineno, found
    try:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except Exception:
        message = type(exc).__name__
    if isinstance(exc, MemoryError):
        message += f" (out of memory: the limit is {memory_bytes // 2**20} MB)"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        message = f"file size limit exceeded: a file may hold {limits['file_bytes'] // 2**20} MB ({message})"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        message = f"file limit exceeded: more than {limits['max_files']} files written ({message})"
    message = message[:value_cap]  # an exception message may be megabytes long
    if line and lines and 0 < line <= len(lines):
        return f"line {line}: {lines[line - 1].strip()}\n{message}"
    return message


def run_job(source, value_cap, memory_bytes, limits):
    import _ast

    workdir = tempfile.mkdtemp(prefix="reasoner-python-", dir="/tmp")
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/bin:/bin"})
    tempfile.tempdir = workdir
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
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
            result["value"] = _encode(value, value_cap)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            result = {"ok": False, "error": f"SystemExit: exited with status {exc.code}"}
    except BaseException as exc:
        result = {"ok": False, "error": _describe(exc, source, value_cap, memory_bytes, limits)}
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    return json.dumps(result)
