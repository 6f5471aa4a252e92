"""The sandbox's runtime: CPython compiled to WebAssembly (Pyodide) inside Deno, one process per run.

The boundary is the WebAssembly virtual machine plus Deno's permission system, not anything
in Python: the program has no system calls at all, and the JavaScript realm it can reach
(Pyodide's `js` module) is a Deno process started with read access to the Pyodide files, the
snapshot and `sandbox/` only: no writes, network, subprocesses, environment, system information
or FFI. It holds the same whether the caller is root or not, and needs no kernel features, so it
works in a plain container. The host adds what Deno cannot: a deadline (kill), a cap on the
process's data memory (RLIMIT_DATA, set from outside), caps on what we read back from it, and
a DENO_DIR where the stores Deno writes unasked (the Cache API, module caches) cannot be made.

Not promised: a bug in V8, Deno or Pyodide that escapes the WebAssembly VM or the permission
checks runs with our rights (root in CI); nothing in the OS (uid, namespaces, seccomp) backs it.

Install: `pip install deno` (the `sandbox` extra) gives the binary; Pyodide comes from the npm
registry through Deno's own npm client, into `home()`, on first use or with
`python -m reasoner.tools.sandbox_setup`. Without either, runs fail closed (`SandboxUnavailable`).

Each run gets a fresh process (nothing from one program can reach the next). Booting CPython
costs about a second, so we restore a memory snapshot taken after boot, and keep up to
`REASONER_SANDBOX_WARM` (default 2) processes started and waiting for their one job.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

PYODIDE_VERSION = "314.0.8"  # also in sandbox/*.mjs; a test checks they agree
# Imported before the snapshot is taken, so programs find them loaded (PAL uses these).
SNAPSHOT_MODULES = ("math, statistics, fractions, datetime, decimal, itertools, collections, re, random, "
                    "functools, operator, string, json, heapq, bisect, copy, typing, tempfile")
CODE_DIR = Path(__file__).resolve().parent / "sandbox"
DATA_OVERHEAD_BYTES = 1800 * 2**20  # Deno and V8 (1.3 GB reserved at start, mostly untouched), JS heaps, files
READY_TIMEOUT_S = 60.0
SETUP_TIMEOUT_S = 300.0
STDERR_KEPT = 4000
HOW_TO_INSTALL = "pip install 'reasoner[sandbox]', then python -m reasoner.tools.sandbox_setup"


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here; no code is run without it."""


@dataclass(frozen=True)
class Installation:
    deno: str
    deno_dir: Path  # Deno's cache for setup: the npm packages, and the snapshot beside it
    run_dir: Path  # DENO_DIR for runners: the same packages, Deno's own stores blocked (`_block_stores`)
    pyodide_dir: Path
    snapshot: Path


def home() -> Path:
    if configured := os.environ.get("REASONER_SANDBOX_HOME"):
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "reasoner" / "sandbox"


def deno_binary() -> str:
    if configured := os.environ.get("REASONER_DENO"):
        if not os.access(configured, os.X_OK):
            raise SandboxUnavailable(f"REASONER_DENO is {configured!r}, which is not an executable file")
        return configured
    try:
        from deno import find_deno_bin  # the PyPI redistribution of Deno
        return str(find_deno_bin())
    except (ImportError, FileNotFoundError, OSError):
        pass
    if found := shutil.which("deno"):
        return found
    raise SandboxUnavailable("Deno is not installed")


def _deno_env(deno_dir: Path, *, network: bool) -> dict[str, str]:
    env = {"DENO_DIR": str(deno_dir), "HOME": str(deno_dir), "PATH": os.defpath, "NO_COLOR": "1",
           "DENO_NO_UPDATE_CHECK": "1", "DENO_NO_PROMPT": "1"}
    if network:  # setup only: reach the npm registry the way npm would here
        for name in ("NPM_CONFIG_REGISTRY", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy",
                     "no_proxy", "DENO_CERT", "DENO_TLS_CA_STORE", "SSL_CERT_FILE", "SSL_CERT_DIR",
                     "NODE_EXTRA_CA_CERTS"):
            if name in os.environ:
                env[name] = os.environ[name]
    return env


def _setup_step(args: list[str], deno_dir: Path, what: str, network: bool) -> None:
    try:
        done = subprocess.run(args, cwd=deno_dir, env=_deno_env(deno_dir, network=network), capture_output=True,
                              timeout=SETUP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-STDERR_KEPT:]
        raise SandboxUnavailable(f"{what} failed (exit {done.returncode}): {tail}")


def install(base: Path | None = None) -> Installation:
    """Fetch Pyodide (once) and take the boot snapshot (once per Pyodide version and module list)."""
    deno = deno_binary()
    base = base or home()
    deno_dir = base / "deno"
    pyodide_dir = deno_dir / "npm" / "registry.npmjs.org" / "pyodide" / PYODIDE_VERSION
    key = hashlib.sha256(f"{PYODIDE_VERSION}|{SNAPSHOT_MODULES}|{(CODE_DIR / 'snapshot.mjs').read_text()}".encode())
    snapshot = base / f"snapshot-{key.hexdigest()[:16]}.bin"
    found = Installation(deno, deno_dir, base / "run", pyodide_dir, snapshot)
    if snapshot.exists() and (pyodide_dir / "pyodide.asm.wasm").exists() and _blocked(found.run_dir):
        return found
    deno_dir.mkdir(parents=True, exist_ok=True)
    with open(base / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing: wait for it
        if not (pyodide_dir / "pyodide.asm.wasm").exists():
            _setup_step([deno, "cache", "--quiet", "--no-config", "--node-modules-dir=none",
                         f"npm:pyodide@{PYODIDE_VERSION}"], deno_dir, f"fetching pyodide {PYODIDE_VERSION} from npm",
                        network=True)
        if not snapshot.exists():
            partial = snapshot.with_suffix(f".{os.getpid()}.partial")
            _setup_step([deno, "run", "--quiet", "--no-prompt", "--cached-only", "--no-config", "--no-lock",
                         "--node-modules-dir=none", f"--allow-read={pyodide_dir}", f"--allow-write={partial}",
                         str(CODE_DIR / "snapshot.mjs"), str(partial), SNAPSHOT_MODULES],
                        deno_dir, "taking the Python snapshot", network=False)
            os.replace(partial, snapshot)
        _block_stores(found.run_dir)
    return found


# Deno writes some stores of its own without asking its permissions: the web Cache API (which a
# program reaches as `caches`) under location_data/, and SQLite caches of module analysis and
# compiled code. Under the runners' DENO_DIR each of those names is taken by something Deno cannot
# use or remove (a file where it wants a folder, non-empty folders where it wants a database), even
# as root, so a program can neither write to disk through them nor leave anything for the next run.
_STORE_BLOCKS = {"location_data": "file", "dep_analysis_cache_v2": "dir", "node_analysis_cache_v2": "dir",
                 "v8_code_cache_v2": "dir"}


def _blocked(run_dir: Path) -> bool:
    return (run_dir / "npm").is_symlink() and all(
        (run_dir / name).is_file() if kind == "file" else (run_dir / name / "blocked").is_dir()
        for name, kind in _STORE_BLOCKS.items())


def _block_stores(run_dir: Path) -> None:
    run_dir.mkdir(exist_ok=True)
    for name, kind in _STORE_BLOCKS.items():
        path = run_dir / name
        if kind == "file":
            if path.is_dir():
                shutil.rmtree(path)
            path.touch()
        else:
            if path.is_file() or path.is_symlink():
                path.unlink()
            (path / "blocked").mkdir(parents=True, exist_ok=True)
    if not (run_dir / "npm").is_symlink():
        (run_dir / "npm").symlink_to(Path("..") / "deno" / "npm")


_installed: Installation | SandboxUnavailable | None = None
_install_lock = threading.Lock()


def installation() -> Installation:
    """The installation, installed on first use. A failure is remembered for the life of the
    process, so a benchmark without the sandbox fails each program at once, not after a fetch."""
    global _installed
    with _install_lock:
        if _installed is None:
            try:
                _installed = install()
            except SandboxUnavailable as exc:
                _installed = exc
        if isinstance(_installed, SandboxUnavailable):
            raise SandboxUnavailable(str(_installed))
        return _installed


class Runner:
    """One Deno process, started ahead and used for exactly one program."""

    def __init__(self, found: Installation, memory_bytes: int) -> None:
        pages = memory_bytes // 65536
        allowed = ",".join(str(p) for p in (found.pyodide_dir, found.snapshot, CODE_DIR))
        args = [found.deno, "run", "--quiet", "--no-prompt", "--cached-only", "--no-config", "--no-lock",
                "--no-code-cache", "--node-modules-dir=none", f"--allow-read={allowed}",
                f"--v8-flags=--wasm-max-mem-pages={pages},--max-old-space-size=256",
                str(CODE_DIR / "runner.mjs"), str(found.snapshot), (CODE_DIR / "worker.mjs").as_uri()]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=found.run_dir, env=_deno_env(found.run_dir, network=False),
                                     start_new_session=True)
        self.stderr = b""
        try:
            # Set from outside (no preexec_fn: we may be in a thread); nothing untrusted runs
            # before the job is sent, which waits for READY. The data limit bounds all of
            # the process, WebAssembly memory, JavaScript heaps and any threads alike.
            data = memory_bytes + DATA_OVERHEAD_BYTES
            for limit, value in ((resource.RLIMIT_DATA, data), (resource.RLIMIT_CORE, 0),
                                 (resource.RLIMIT_NOFILE, 256)):
                resource.prlimit(self.proc.pid, limit, (value, value))
        except (OSError, ValueError):
            self.kill()
            raise

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        lines, _ = self._read(time.monotonic() + timeout_s, 4096, first_line=True)
        if lines.strip() != b'{"kind":"ready"}':
            self.kill()
            raise SandboxUnavailable(f"the sandbox did not start: {self._stderr_text() or lines[-500:]!r}")

    def run(self, job: dict[str, Any], timeout_s: float, max_bytes: int) -> tuple[bytes, str | None]:
        """Send the job; return what the process printed and why it was stopped, if it was."""
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            pass  # it died; what it said, if anything, is read below
        data, stopped = self._read(time.monotonic() + timeout_s, max_bytes, first_line=False)
        self.kill()
        return data, stopped

    def converse(self, job: dict[str, Any], timeout_s: float, max_bytes: int,
                 on_call: Callable[[str], tuple[bool, str]]) -> tuple[bytes, str | None]:
        """`run`, for a program that calls the host: each `{"kind": "call"}` line it prints is
        answered with `on_call(text)` (ok, text) on its stdin. The deadline leaves out the time
        spent answering; `max_bytes` bounds what the program prints between calls."""
        deadline = time.monotonic() + timeout_s
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            while True:
                data, stopped = self._read(deadline, max_bytes, first_line=True)
                line, _, rest = data.partition(b"\n")
                if stopped or not line.startswith(b'{"kind":"call"'):
                    return data, stopped  # the report (or why it was stopped): the runner's last line
                if rest:  # the runner prints nothing after a call until it is answered
                    return data, "flood"
                try:
                    text = json.loads(line)["text"]
                except (ValueError, KeyError, TypeError):
                    return data, "flood"
                paused = time.monotonic()
                ok, reply = on_call(text if isinstance(text, str) else "")
                deadline += time.monotonic() - paused
                self.proc.stdin.write(json.dumps({"kind": "answer", "ok": ok, "text": reply}).encode() + b"\n")  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:  # it died while we answered: what it printed last (a flood line) is still in the pipe
            return self._read(min(deadline, time.monotonic() + 1.0), max_bytes, first_line=False)
        finally:
            self.kill()

    def _read(self, deadline: float, max_bytes: int, first_line: bool) -> tuple[bytes, str | None]:
        out = self.proc.stdout.fileno()  # type: ignore[union-attr]
        err = self.proc.stderr.fileno()  # type: ignore[union-attr]
        data, open_fds = b"", {out, err}
        while out in open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                return data, "timeout"
            ready, _, _ = select.select(list(open_fds), [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.discard(fd)
                elif fd == err:
                    self.stderr = (self.stderr + chunk)[:STDERR_KEPT]
                else:
                    data += chunk
            if len(data) > max_bytes:
                return data[:max_bytes], "flood"
            if first_line and b"\n" in data:
                return data, None
        return data, None

    def _stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


class Pool:
    """Runners started ahead. A runner is never reused: taking one starts its replacement."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._idle: list[Runner] = []
        self._starting = 0
        self._pids: set[int] = set()
        self._owner = os.getpid()
        self._last: tuple[Installation, int] | None = None  # what the last runner was started with

    def pids(self) -> set[int]:
        """Processes the pool holds, started or starting: not a leak."""
        with self._lock:
            return set(self._pids)

    def settle(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until no runner is being started (so `pids()` names every runner we hold)."""
        deadline = time.monotonic() + timeout_s
        while self._starting and time.monotonic() < deadline:
            time.sleep(0.02)

    def take(self, memory_bytes: int) -> Runner:
        found = installation()
        with self._lock:
            if os.getpid() != self._owner:  # a forked copy of us: those runners are the parent's
                self._idle, self._starting, self._pids, self._owner = [], 0, set(), os.getpid()
            runner = None
            while self._idle and runner is None:
                candidate = self._idle.pop(0)
                runner = candidate if candidate.alive() else None
        if runner is None:
            runner = self._start(found, memory_bytes)
        self._last = (found, memory_bytes)
        return runner

    def release(self, runner: Runner) -> None:
        """The run is over: forget its runner and start its replacement (only now, so that
        starting one does not compete with the run for the CPU)."""
        self._forget(runner)
        if self._last is not None:
            self._refill(*self._last)

    def _forget(self, runner: Runner) -> None:
        with self._lock:
            self._pids.discard(runner.proc.pid)

    def _start(self, found: Installation, memory_bytes: int) -> Runner:
        runner = Runner(found, memory_bytes)
        with self._lock:
            self._pids.add(runner.proc.pid)
        try:
            runner.wait_ready()
        except BaseException:
            self._forget(runner)  # not release: a failed start must not start another
            raise
        return runner

    def _refill(self, found: Installation, memory_bytes: int) -> None:
        with self._lock:
            wanted = self.size - len(self._idle) - self._starting
            self._starting += max(wanted, 0)
        for _ in range(max(wanted, 0)):
            threading.Thread(target=self._start_idle, args=(found, memory_bytes), daemon=True).start()

    def _start_idle(self, found: Installation, memory_bytes: int) -> None:
        try:
            runner = self._start(found, memory_bytes)
        except (SandboxUnavailable, OSError):
            runner = None
        with self._lock:
            self._starting -= 1
            if runner is not None:
                self._idle.append(runner)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for runner in idle:
            runner.kill()
            self._forget(runner)


pool = Pool(int(os.environ.get("REASONER_SANDBOX_WARM", "2")))
# Idle runners also end by themselves when our end of their stdin closes, however we exit.
atexit.register(pool.close)
