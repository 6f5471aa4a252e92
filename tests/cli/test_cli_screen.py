"""What `reasoner solve` puts on screen: no terminal control from model text, marked cuts, labels."""

from __future__ import annotations

import io
from typing import Any

import pytest

from reasoner.cli.console import SafeConsole, clean
from reasoner.cli.main import main
from reasoner.cli.solve import tail
from reasoner.testing.fake_openai import FakeOpenAIServer

HOSTILE = (
    "\x1b]0;owned title\x07"  # window title
    "\x1b[2J\x1b[H"  # clear the screen, cursor home
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"  # hyperlink
    "\x9b31m"  # C1 CSI
    "fake\rline\x08\x0c\u202eevil"  # carriage return, backspace, form feed, bidi override
)


def test_clean_removes_every_control_sequence_but_newline_and_tab() -> None:
    assert clean(HOSTILE + "\tok\nnext") == "clickfakelineevil\tok\nnext"
    assert clean("\x1b]0;unterminated title, rest kept") == "0;unterminated title, rest kept"


def test_every_print_path_of_the_console_is_cleaned_and_scrubbed() -> None:
    from rich.panel import Panel
    from rich.text import Text

    from reasoner import secrets

    secrets.register("sk-screen-secret-5678")
    out = io.StringIO()
    console = SafeConsole(file=out, force_terminal=True, width=100)
    text = HOSTILE + " sk-screen-secret-5678"
    console.print(text, markup=False)
    console.print(Panel(text))
    console.print(Text("label ", style="bold") + Text(text, style="red"))
    console.print_json(data={"t": text})
    written = out.getvalue()
    # Rich's own styling is the only escape left: SGR colour codes.
    leftover = written.replace("\x1b[0m", "")
    for code in ("1", "31", "32", "34", "1;34", "33", "1;33", "3;35", "3;36", "1;31", "2"):
        leftover = leftover.replace(f"\x1b[{code}m", "")
    assert "\x1b" not in leftover and "\x07" not in written and "\x9b" not in written and "\r" not in written
    assert "sk-screen-secret-5678" not in written and written.count("***") == 4


def hostile(body: dict[str, Any], index: int) -> str:
    return f" {HOSTILE} 6 * 7 = 42.\nThe answer is 42."


pytestmark = pytest.mark.server(models="tiny", responder=hostile)


def test_model_text_cannot_drive_the_terminal(server, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["solve", "Q?", "--model", server.base_url, "--trace"]) == 0
    out = capsys.readouterr().out
    assert "42" in out
    # capsys is no terminal, so rich adds no escapes of its own: any left came from the model.
    assert "\x1b" not in out and "\x9b" not in out and "\r" not in out and "\u202e" not in out


def test_a_long_reasoning_is_cut_at_a_sentence_with_a_mark() -> None:
    text = " ".join(f"Step {i} adds {i} apples to the basket." for i in range(200)) + " The answer is 42."
    shown = tail(text, 300)
    first, rest = shown.split("\n", 1)
    assert first.startswith("… (") and "earlier characters not shown" in first
    assert rest.startswith("Step ") and rest.endswith("The answer is 42.")
    assert len(rest) <= 300 and int(first[3:].split()[0].replace(",", "")) + len(rest) == len(text)
    assert tail("short text") == "short text"


def test_details_come_under_a_label(capsys) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAIServer("tiny", responder=lambda body, i: " 6 * 7 = 42.\nThe answer is 42.") as srv:
        assert main(["solve", "Q?", "--model", srv.base_url, "-s", "self-consistency", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    before, _, after = out.partition("\ndetails")
    assert after, out  # a line that starts with the label
    assert "{" not in before.split("2 calls")[-1] and after.lstrip(" (").split("\n", 1)[1].lstrip().startswith("{")


def test_chat_help_names_every_kind_of_model_and_the_history_file() -> None:
    from reasoner.cli.chat import HISTORY_FILE, Chat

    out = io.StringIO()
    chat = Chat("local", None, "zero-shot-cot", [], None, console=SafeConsole(file=out, width=80))
    assert chat.command("/help")
    shown = " ".join(out.getvalue().split())
    for spec in ("local (SmolLM2)", "local:gemma", "llamacpp:PATH.gguf", "http://HOST:PORT/v1", "openai:MODEL", "vllm:MODEL_OR_PATH"):
        assert spec in shown
    assert str(HISTORY_FILE) in shown and "context window" in shown
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80


async def test_chat_trace_writes_the_last_turns_graph_as_a_page(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from reasoner.cli.chat import Chat, Turn
    from reasoner.strategies.zero_shot_cot import ZeroShotCoT
    from reasoner.testing.scripted import ScriptedBackend

    solution = await ZeroShotCoT().solve("What is 2 + 3?", ScriptedBackend([], default="2 + 3 = 5. The answer is 5."))
    out = io.StringIO()
    chat = Chat("local", None, "zero-shot-cot", [], None, console=SafeConsole(file=out, width=80))
    chat.session.turns.append(Turn(question=solution.question, answer=solution.answer, text=solution.text,
                                   strategy="zero-shot-cot", usage=solution.usage.model_dump(), trace=solution.trace))  # fmt: skip
    page = tmp_path / "turn.html"
    assert chat.command(f"/trace {page}")
    html = page.read_text()
    assert "What is 2 + 3?" in html and "<script" in html and "http://" not in html.split("<script", 1)[1][:200]
    assert f"trace page: {page}" in " ".join(out.getvalue().split())
    assert chat.command(f"/trace {tmp_path}/no/such/dir/x.html") and "cannot write" in out.getvalue()
