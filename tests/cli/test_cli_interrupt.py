"""Ctrl-C while `reasoner` starts up: one line and exit status 130, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# The command as the console script runs it (argv[0] "reasoner"), with SIGINT sent to itself at a
# chosen point of start-up. The `reasoner` package itself is imported first, as the script does.
DRIVER = """
import os, signal, sys, time
sys.argv = ["reasoner", "strategies"]
import reasoner
{arrange}
"""

WHILE_IMPORTING = """
import reasoner.cli
os.kill(os.getpid(), signal.SIGINT)
import reasoner.cli.main  # the interrupt lands while this loads its modules
time.sleep(2)
"""

WHILE_FINDING_STRATEGIES = """
import reasoner.cli.main as m

def slow_scan():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(2)

m.available = slow_scan
sys.exit(m.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("arrange", [WHILE_IMPORTING, WHILE_FINDING_STRATEGIES], ids=["imports", "strategies"])
def test_ctrl_c_during_start_up_prints_one_line(arrange: str) -> None:
    code = DRIVER.format(arrange=textwrap.dedent(arrange))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert result.stderr.strip().splitlines() in (["reasoner: interrupted"], ["interrupted"])


IGNORED = """
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's background job starts
import reasoner.cli.main as m

scan = m.available

def interrupted_scan():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)
    return scan()

m.available = interrupted_scan
sys.exit(m.main(sys.argv[1:]))
"""


def test_a_command_started_with_ctrl_c_ignored_keeps_ignoring_it() -> None:
    result = subprocess.run([sys.executable, "-c", DRIVER.format(arrange=textwrap.dedent(IGNORED))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "few-shot-cot" in result.stdout


def test_the_command_installs_its_handler_before_the_heavy_imports() -> None:
    # The window in which Ctrl-C gave a traceback was `import reasoner` loading pydantic, httpx and
    # networkx before `reasoner.cli` could install its handler; the package now loads them lazily.
    code = (
        "import sys; sys.argv = ['reasoner']; import reasoner.cli, signal; "
        "heavy = sorted(m for m in ('pydantic', 'httpx', 'networkx', 'jinja2') if m in sys.modules); "
        "print(heavy, signal.getsignal(signal.SIGINT).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["[]", "_interrupted_while_starting"], result.stdout + result.stderr
