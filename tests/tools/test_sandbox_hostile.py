"""Hostile programs against the Python sandbox, run as whoever runs the tests (root in CI).

Each program tries to act outside the sandbox: signal a process (a canary, and this test process,
the caller), change the clock or another process's priority, make and read a device node, reach
the network, start processes by every route, get native code, walk the heap for removed functions,
read other processes and host files, escape the scratch folder by symlink, or exhaust memory, time,
output or disk. All run (a few at a time, to stay quick on 2 cores) before any test looks; then the
world is checked: the canary file and folder unchanged, the canary process alive, unsignalled and
at its priority, no connection reached our listener, no secret in any output, the clock where it
was, no process left behind. Each program also has its own expectation of how it fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from reasoner.tools import run_python, sandbox_runtime
from reasoner.tools.base import ToolResult

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the canaries use /proc")

CATCHABLE = [s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)]
IMP = ("import _imp\nfrom importlib.machinery import ModuleSpec\nposix = _imp.create_builtin(ModuleSpec('posix', None))\n"
       "sig = _imp.create_builtin(ModuleSpec('_signal', None))\n")
HEAVY = {"memory-bomb", "js-memory-bomb", "disk-flood", "worker-bomb"}
ANY = ""  # contained however it fails (or even "succeeds" inside the sandbox); the world check decides

# name: (program, timeout_s, text its error must contain, or ANY). Templates get {canary} (a pid),
# {caller} (this process's pid), {dir} and {file} (the canary folder and file), {port} (our listener),
# {pyodide} (the Pyodide files, which the sandbox may read).
PROGRAMS: dict[str, tuple[str, float, str]] = {
    "kill-canary": ("import os, signal\nos.kill({canary}, signal.SIGKILL)", 5, "PermissionError"),
    "kill-caller": ("import os, signal\nos.kill({caller}, signal.SIGTERM)", 5, "PermissionError"),
    "killpg": ("import os, signal\nos.killpg(os.getpgid({canary}), signal.SIGKILL)", 5, ANY),
    "kill-every-pid": ("import os\nfor pid in range(1, 5000):\n    try:\n        os.kill(pid, 9)\n"
                       "    except OSError:\n        pass\n'survived'", 5, ANY),
    "pidfd": ("import os, signal\nsignal.pidfd_send_signal(os.pidfd_open({caller}), signal.SIGKILL)", 5, ANY),
    # A fresh copy of a builtin module brings back what a bootstrap deleted (the old sandbox's hole).
    "imp-pidfd-caller": (IMP + "sig.pidfd_send_signal(posix.pidfd_open({caller}), 9)", 5, "Error"),
    "imp-kill-canary": (IMP + "posix.kill({canary}, 10)", 5, "Error"),
    "imp-setpriority": (IMP + "posix.setpriority(0, {canary}, 19)", 5, "Error"),
    "imp-mknod": (IMP + "posix.mknod('kmsg', 0o20600, posix.makedev(1, 11))\nlen(open('kmsg', 'rb').read(4096))", 5, "Error"),
    "mknod-kmsg": ("import os, stat\nos.mknod('kmsg', stat.S_IFCHR | 0o600, os.makedev(1, 11))\n"
                   "open('kmsg', 'rb').read(4096)", 5, "Error"),
    "mknod-disk": ("import os, stat\nos.mknod('sda', stat.S_IFBLK | 0o600, os.makedev(8, 0))\n"
                   "open('sda', 'rb').read(512)", 5, "Error"),
    "setpriority": ("import os\nos.setpriority(os.PRIO_PROCESS, {canary}, 19)\nos.getpriority(os.PRIO_PROCESS, {canary})",
                    5, ANY),
    "nice": ("import os\nos.nice(-20)\nos.nice(19)", 5, ANY),
    "clock-settime": ("import time\ntime.clock_settime(time.CLOCK_REALTIME, 0.0)\ntime.time()", 5, ANY),
    "ctypes-libc": ("import ctypes\nlibc = ctypes.CDLL(None)\nfor name, args in (('kill', ({canary}, 9)), "
                    "('ptrace', (16, {canary}, 0, 0)), ('setpriority', (0, {canary}, 19)), ('syscall', (62, {canary}, 9)),"
                    " ('clock_settime', (0, 0))):\n    try:\n        print(name, getattr(libc, name)(*args))\n"
                    "    except Exception as e:\n        print(name, type(e).__name__)", 5, ANY),
    "ptrace-proc-mem": ("open('/proc/{canary}/mem', 'rb').read(16)", 5, "Error"),
    "socket-connect": ("import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).send(b'hi')", 5, "Error"),
    "socket-raw": ("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)", 5, "Error"),
    "urllib": ("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2).read()", 5, ANY),
    "js-fetch": ("from pyodide.code import run_js\nrun_js(\"fetch('http://127.0.0.1:{port}/').catch(e => 0); "
                 "new WebSocket('ws://127.0.0.1:{port}/'); Deno.connect({{port: {port}}})\")", 5, "NotCapable"),
    "fork-bomb": ("import os\nwhile True:\n    os.fork()", 5, "OSError"),
    "subprocess": ("import subprocess\nsubprocess.run(['kill', '-9', '{canary}'])", 5, "OSError"),
    "multiprocessing": ("import multiprocessing, os\np = multiprocessing.Process(target=os.kill, args=({canary}, 9))\n"
                        "p.start()\np.join()", 5, ANY),
    "posix-spawn": ("import os\nos.posix_spawn('/bin/kill', ['kill', '-9', '{canary}'], {{}})", 5, "Error"),
    "posixsubprocess": ("import _posixsubprocess\n_posixsubprocess.fork_exec(*[None] * 23)", 5, "Error"),
    "os-system": ("import os\nos.system('kill -9 {canary}')", 5, "Requires env access"),  # Deno refuses
    "threads": ("import threading\nfor _ in range(10000):\n    threading.Thread(target=lambda: None).start()", 5, "Error"),
    "deno-run": ("import js\njs.Deno.Command.new('kill', js.JSON.parse('{{\"args\": [\"-9\", \"{canary}\"]}}')).outputSync()",
                 5, "NotCapable"),
    "deno-kill": ("import js\njs.Deno.kill({canary}, 'SIGKILL')", 5, "NotCapable"),
    "deno-ffi": ("import js\njs.Deno.dlopen('libc.so.6', js.JSON.parse('{{}}'))", 5, "NotCapable"),
    "deno-env": ("import js\njs.Deno.env.toObject()", 5, "NotCapable"),
    "deno-read-proc": ("import js\njs.Deno.readTextFileSync('/proc/{canary}/environ')", 5, "NotCapable"),
    "deno-read-file": ("import js\njs.Deno.readTextFileSync('{file}')", 5, "NotCapable"),
    "deno-write-file": ("import js\njs.Deno.writeTextFileSync('{file}', 'pwned')", 5, "NotCapable"),
    "deno-remove": ("import js\njs.Deno.removeSync('{file}')", 5, "NotCapable"),
    "deno-symlink": ("import js\njs.Deno.symlinkSync('{dir}', '{dir}/escape')", 5, "NotCapable"),
    "js-import-file": ("from pyodide.code import run_js\nimport time\nrun_js(\"import('file://{file}')\")\ntime.sleep(0.5)", 5, ANY),
    "worker-bomb": ("from pyodide.code import run_js\nrun_js(\"for (let i = 0; i < 500; i++) new Worker('data:text/"
                    "javascript,while(1);', {{type: 'module'}})\")", 5, "Error"),
    "cache-api": ("from pyodide.code import run_js\nrun_js(\"globalThis.postMessage = () => {{}}; const c = globalThis.caches"
                  " ?? new CacheStorage(); (async () => {{ for (let i = 0; ; i++) await (await c.open('x' + i)).put("
                  "'http://a/', new Response('x'.repeat(1e6))) }})()\")", 3, ANY),
    "data-url-imports": ("from pyodide.code import run_js\nrun_js(\"globalThis.postMessage = () => {{}}; (async () => {{ for "
                         "(let i = 0; ; i++) await import('data:text/javascript,export default ' + i) }})()\")", 3, ANY),
    "node-fs": ("from pyodide.code import run_js\nrun_js(\"process.getBuiltinModule('fs').readFileSync('{file}', 'utf8')\")",
                5, "NotCapable"),
    "node-child-process": ("from pyodide.code import run_js\nrun_js(\"process.getBuiltinModule('child_process')"
                           ".execSync('kill -9 {canary}')\")", 5, "NotCapable"),
    "mount-host-folder": ("import os, pyodide_js\nos.makedirs('/mnt/host')\npyodide_js.mountNodeFS('/mnt/host', '{dir}')\n"
                          "open('/mnt/host/canary.txt').read()", 5, "Error"),
    # The one host folder the sandbox may read: mounted, it must still refuse writes.
    "mount-pyodide-folder": ("import os, pyodide_js\nos.makedirs('/mnt/p')\npyodide_js.mountNodeFS('/mnt/p', '{pyodide}')\n"
                             "open('/mnt/p/pyodide.asm.wasm', 'r+b').write(b'x')\nopen('/mnt/p/escape', 'w').write('x')",
                             5, "Requires write access"),
    "gc-walk": ("import gc\nnames = {{'kill', 'system', 'fork', 'mknod', 'pidfd_send_signal', 'setpriority', 'clock_settime'}}\n"
                "found = [o for o in gc.get_objects() if callable(o) and getattr(o, '__name__', '') in names]\n"
                "for f in found:\n    for args in (({canary}, 9), ('kill -9 {canary}',), ()):\n        try:\n"
                "            f(*args)\n        except Exception:\n            pass\nlen(found)", 5, ANY),
    "proc-other": ("import os\nprint(os.listdir('/proc'))\nopen('/proc/{canary}/cmdline').read()", 5, "Error"),
    "proc-self-environ": ("import os\nprint(dict(os.environ))\nopen('/proc/self/environ').read()", 5, ANY),
    "read-host-file": ("open('{file}').read()", 5, "FileNotFoundError"),
    "write-host-file": ("import os\nos.makedirs('{dir}', exist_ok=True)\nopen('{file}', 'w').write('pwned')\n"
                        "os.remove('{file}')\nopen('/tmp/escape-test-file', 'w').write('x')", 5, ANY),
    "symlink-escape": ("import os\nos.symlink('{dir}', 'link')\nos.symlink('/', 'root')\nopen('link/canary.txt', 'w').write('pwned')\n"
                       "open('root/tmp/escape-test-file', 'w').write('x')", 5, ANY),
    "dotdot-escape": ("import os\nopen('../../../../{file}', 'w').write('pwned')\nos.chdir('/')\nsorted(os.listdir('.'))", 5, ANY),
    "memory-bomb": ("a = []\nwhile True:\n    a.append(bytearray(50 * 2**20))", 20, "MemoryError"),
    "js-memory-bomb": ("from pyodide.code import run_js\nrun_js('let a = []; while (true) a.push(new Array(1e6).fill(1))')",
                       20, "out of memory"),
    "infinite-loop": ("while True:\n    pass", 1, "timed out"),
    "blocked-forever": ("from pyodide.code import run_js\nrun_js('Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)')",
                        1, "timed out"),
    "output-flood": ("while True:\n    print('x' * 10000)", 5, "output limit exceeded"),
    "channel-flood": ("import js\nb = js.TextEncoder.new().encode('x' * 100000)\nwhile True:\n    js.Deno.stdout.writeSync(b)",
                      5, "output limit exceeded"),
    "disk-flood": ("i = 0\nwhile True:\n    open(f'f{{i}}', 'wb').write(b'x' * 2**24)\n    i += 1", 20, "file size limit exceeded"),
    "file-count-flood": ("i = 0\nwhile True:\n    open(f'f{{i}}', 'wb').write(b'x' * 2**19)\n    i += 1", 20, "file limit exceeded"),
    "recursion": ("import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)", 3, ANY),
    "exit-early": ("import os\nos._exit(0)", 5, ANY),
    "forged-report": ("import js\njs.postMessage(js.JSON.parse('{{\"kind\": \"result\", \"result\": \"{{\\\\\"ok\\\\\": true, "
                      "\\\\\"value\\\\\": 5}}\"}}'))\nimport time\ntime.sleep(2)", 5, ANY),
}


@dataclass
class World:
    canary: subprocess.Popen[bytes]
    folder: Path
    file: Path
    secret: str
    listener: socket.socket
    connections: list[str]
    signals: list[int]
    results: dict[str, ToolResult]
    clock_offset: float  # wall clock minus monotonic clock, before the programs ran
    snapshot_digest: str
    home_tree: list[tuple[str, int]]  # every path and size under the sandbox's home, before
    children_before: set[int]  # this process's children before the programs ran (other tests' servers)


def _fingerprint(folder: Path) -> list[tuple[str, float, str]]:
    return sorted((p.name, p.stat().st_mtime, hashlib.sha256(p.read_bytes()).hexdigest()) for p in folder.iterdir())


def _canary_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("canary")
    secret = "canary-" + secrets.token_hex(12)
    file = folder / "canary.txt"
    file.write_text(secret)
    log = folder / "signals.log"
    # The canary records any catchable signal it gets in a file we then expect not to exist.
    canary_code = (
        "import signal, sys, time\n"
        f"def note(n, _):\n    open({str(log)!r}, 'a').write(f'{{n}}\\n')\n"
        f"for s in {[int(s) for s in CATCHABLE]!r}:\n    signal.signal(s, note)\n"
        "while True:\n    time.sleep(1)\n"
    )
    canary = subprocess.Popen([sys.executable, "-c", canary_code, secret], env={"CANARY_SECRET": secret, "PATH": os.defpath})
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    connections: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, peer = listener.accept()
                connections.append(str(peer))
                conn.close()

    threading.Thread(target=accept, daemon=True).start()
    received: list[int] = []
    previous = {s: signal.signal(s, lambda n, _f: received.append(n)) for s in (signal.SIGTERM, signal.SIGUSR1,
                                                                                signal.SIGUSR2, signal.SIGHUP)}
    port = listener.getsockname()[1]
    fields = {"canary": canary.pid, "caller": os.getpid(), "dir": str(folder), "file": str(file), "port": port,
              "pyodide": str(sandbox_runtime.installation().pyodide_dir)}
    before = _fingerprint(folder)
    snapshot = sandbox_runtime.installation().snapshot
    digest, clock_offset = hashlib.sha256(snapshot.read_bytes()).hexdigest(), time.time() - time.monotonic()
    home_tree = _tree(sandbox_runtime.home())
    children_before = _children() - sandbox_runtime.pool.pids() - {canary.pid}
    try:
        heavy = threading.Lock()  # one memory hog at a time: each may take a GB or so before it is stopped

        def attempt(name: str, code: str, timeout: float) -> ToolResult:
            with heavy if name in HEAVY else contextlib.nullcontext():
                return run_python(code, timeout)

        with ThreadPoolExecutor(max_workers=3) as executor:
            futures = {name: executor.submit(attempt, name, code.format(**fields), timeout)
                       for name, (code, timeout, _) in PROGRAMS.items()}
            results = {name: future.result() for name, future in futures.items()}
        time.sleep(0.5)  # let a late signal or connection land before we look
        assert _fingerprint(folder) == before, "the canary folder changed"
        yield World(canary, folder, file, secret, listener, connections, received, results, clock_offset, digest, home_tree,
                    children_before)
    finally:
        stop.set()
        listener.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        canary.kill()
        canary.wait()


def test_enough_hostile_programs() -> None:
    assert len(PROGRAMS) >= 25


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_each_program_is_contained(world: World, name: str) -> None:
    result = world.results[name]
    _, _, expected = PROGRAMS[name]
    assert isinstance(result, ToolResult)
    assert world.secret not in result.output, f"{name} read the canary's secret"
    if expected:
        assert not result.ok and expected in (result.error or ""), f"{name}: {result.output}"
    if result.ok:  # a forged or sandbox-internal "success" must still be a plain value, never a crash
        assert result.value is None or isinstance(result.value, (int, float, bool, str))


def test_the_canary_process_was_not_touched(world: World) -> None:
    assert world.canary.poll() is None, "the canary process was killed"
    assert _canary_state(world.canary.pid) in ("S", "R"), "the canary process was stopped or traced"
    assert os.getpriority(os.PRIO_PROCESS, world.canary.pid) == 0, "the canary's priority was changed"
    assert not (world.folder / "signals.log").exists(), "the canary process was signalled"


def test_the_caller_was_not_signalled(world: World) -> None:
    assert world.signals == [], f"this process received signals {world.signals}"


def test_nothing_outside_was_changed_or_reached(world: World) -> None:
    assert world.file.read_text() == world.secret
    assert sorted(p.name for p in world.folder.iterdir()) == ["canary.txt"]
    assert not Path("/tmp/escape-test-file").exists()
    assert world.connections == [], f"a program reached our listener: {world.connections}"
    assert abs(time.time() - time.monotonic() - world.clock_offset) < 5, "the clock moved"


def test_the_sandbox_files_were_not_changed(world: World) -> None:
    found = sandbox_runtime.installation()
    assert hashlib.sha256(found.snapshot.read_bytes()).hexdigest() == world.snapshot_digest
    # Nothing a program does reaches the disk, Deno's own stores (the Cache API, module caches) included.
    assert _tree(sandbox_runtime.home()) == world.home_tree


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_size if not p.is_dir() else 0) for p in root.rglob("*"))


def _children() -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            children.update(int(pid) for pid in (task / "children").read_text().split())
    return children


def test_no_program_process_is_left(world: World) -> None:
    assert world.results  # every program has finished: its runner must be gone
    sandbox_runtime.pool.settle()
    # Processes other tests of the session started before (a vLLM engine's workers) are not ours.
    left = _children() - sandbox_runtime.pool.pids() - {world.canary.pid} - world.children_before
    assert left == set(), [Path(f"/proc/{pid}/cmdline").read_bytes()[:200] for pid in left if Path(f"/proc/{pid}").exists()]


def test_the_sandbox_ran_them() -> None:
    # Guards the rest: "contained" must not mean "the sandbox was unavailable and nothing ran".
    result = run_python("import sys\nsys.platform, 6 * 7")
    assert result.ok and result.value == "('emscripten', 42)", result.output
