"""The runner's failures a user can act on: exit codes, the run-folder lock, bad --out, a full disk,
progress that says only what it knows, and no secret in anything written or printed."""

from __future__ import annotations

import errno
import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from reasoner.bench import progress
from reasoner.bench.gsm8k import BenchConfig, run_gsm8k
from reasoner.bench.lock import RunLock
from reasoner.bench.progress import Tally
from reasoner.bench.record import Record
from reasoner.bench.runfolder import read_run
from reasoner.bench.store import ResultStore
from reasoner.cli.main import main
from reasoner.graph import Graph, NodeId
from reasoner.strategy import Strategy, get_strategy
from reasoner.testing.fake_openai import Fault, FakeOpenAIServer
from reasoner.testing.scripted import Rule, ScriptedBackend
from reasoner.types import Answer, GenerationRequest

QUESTIONS = [{"question": f"Tom has {n} apples and buys {n} more. How many now?", "answer": 2 * n} for n in range(1, 9)]


def sums(text: str) -> str:
    """The simulated model: doubles the first number of the last question in the prompt."""
    question = text.rsplit("Q: ", 1)[-1]
    n = int(question.split("has ", 1)[1].split()[0]) if "has " in question else 0
    return f"{n} + {n} = {2 * n}. The answer is {2 * n}."


def scripted(request: GenerationRequest, index: int) -> str:
    return sums("\n".join(m.content for m in request.as_messages()))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "apples.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


def http_reply(body: dict[str, Any], index: int) -> str:
    messages = body.get("messages")
    return sums("\n".join(str(m.get("content") or "") for m in messages) if messages else str(body.get("prompt")))


pytestmark = pytest.mark.server(responder=http_reply, record=False)


def argv(server: FakeOpenAIServer, data: Path, out: Path, *extra: str) -> list[str]:
    return ["bench", "gsm8k", "-s", "few-shot-cot", "--model", server.base_url, "--data", str(data), "--out", str(out), *extra]


def config(data: Path, out: Path, **kw: Any) -> BenchConfig:
    return BenchConfig(strategies=kw.pop("strategies", ["few-shot-cot"]), out=out, data=data, **kw)


def plain_console() -> tuple[Console, Any]:
    import io

    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


# -- the run folder -------------------------------------------------------------------------------------


def test_a_second_run_on_the_same_folder_fails_at_once_naming_the_holder(
    server: FakeOpenAIServer, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):  # as another run would hold it
        assert main(argv(server, data, out)) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "in use by another run" in err and f"pid {os.getpid()}" in err and "started" in err
    assert not (out / "results.jsonl").exists()
    assert main(argv(server, data, out)) == 0  # released: the folder is free again
    assert not (out / "run.lock").exists()


def test_a_stale_lock_from_a_dead_process_is_taken_over(
    server: FakeOpenAIServer, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    # What a SIGKILLed run leaves: the file, but no process holding its flock.
    (out / "run.lock").write_text(json.dumps({"pid": 2**22 + 7, "host": "elsewhere", "started_at": "2026-01-01T00:00:00+00:00"}))
    assert main(argv(server, data, out)) == 0
    printed = capsys.readouterr().out.replace("\n", " ")
    assert "took over the lock" in printed and "pid 4194311" in printed
    assert len((out / "results.jsonl").read_text().splitlines()) == len(QUESTIONS)


def test_out_that_is_a_file_or_cannot_be_created_is_one_line(
    server: FakeOpenAIServer, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    assert main(argv(server, data, afile)) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(argv(server, data, afile / "run")) == 2
    err = capsys.readouterr().err
    assert "cannot create the run folder" in err and len(err.strip().splitlines()) == 1
    assert afile.read_text() == "mine"


def test_a_full_disk_says_what_is_saved_and_how_to_resume(
    server: FakeOpenAIServer, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    real = ResultStore.append

    def fill_up(self: ResultStore, record: Record, trace: dict[str, Any]) -> None:
        if self.appended == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.traces_path))
        real(self, record, trace)

    monkeypatch.setattr(ResultStore, "append", fill_up)
    assert main(argv(server, data, out, "-c", "1")) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "3 finished records are saved" in err and "Traceback" not in err
    command = shlex.split(err.strip().splitlines()[-1])
    assert command[-3:] == ["--out", str(out), "--resume"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 3

    monkeypatch.setattr(ResultStore, "append", real)
    assert main(command[1:]) == 0
    assert len({json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()}) == len(QUESTIONS)


def test_repeated_records_are_one_note(tmp_path: Path) -> None:
    run = {"settings": {"strategies": {"s": {}}, "data": {"questions": 400}, "scoring": "ours"}, "sessions": []}
    (tmp_path / "run.json").write_text(json.dumps(run))
    rows = [Record(strategy="s", id=f"q{i}", question="?", gold="1").model_dump() for i in range(400)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + rows))
    _, records, notes = read_run(tmp_path)
    assert len(records) == 400
    assert notes == ["results.jsonl holds 400 record(s) more than once (e.g. s / q0); the last of each counts"]


# -- what the terminal shows --------------------------------------------------------------------------


async def test_progress_shows_no_rate_or_eta_before_there_is_data(data: Path, tmp_path: Path) -> None:
    import io

    buffer = io.StringIO()
    backend = ScriptedBackend([Rule(r".", scripted)], delay_s=0.3)
    console = Console(file=buffer, force_terminal=True, width=140)
    await run_gsm8k(config(data, tmp_path / "run", limit=2, concurrency=2), backend=backend, console=console)
    shown = buffer.getvalue()
    assert "0.0 tok/s" not in shown and "-:--:--" not in shown
    assert "—" in shown and "tok/s" in shown  # a placeholder first, then the rate
    assert "1 strategy on" in shown and "2 questions" in shown


def test_eta_grows_while_nothing_finishes() -> None:
    t = Tally(total=10, done=2, done_now=2)
    assert t.eta(10.0) == "0:00:40"
    assert t.eta(30.0) == "0:02:00"  # a stall (retries): the pace so far drops, the estimate grows
    assert Tally(total=10).eta(5.0) == "—" and Tally(total=10).rate(5.0) == "—"
    assert Tally(total=3, done=3).eta(1.0) == "done"


async def test_each_strategy_says_done_once(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)  # a line on every update
    console, buffer = plain_console()
    strategies = {"k1": get_strategy("few-shot-cot", k=1), "k2": get_strategy("few-shot-cot", k=2)}
    backend = ScriptedBackend([Rule(r".", scripted)])
    await run_gsm8k(config(data, tmp_path / "run", strategies=strategies, concurrency=3), backend=backend, console=console)
    lines = buffer.getvalue().splitlines()
    for label in strategies:
        assert sum(line.startswith(f"{label}: ") and line.endswith("done") for line in lines) == 1, label
    assert "1 error " not in buffer.getvalue() and "0 errors" in buffer.getvalue()


# -- fallbacks --------------------------------------------------------------------------------------------


class SometimesFallsBack(Strategy):
    """Answers every question; says it fell back to few-shot-cot on the even-numbered ones."""

    name = "sometimes-falls-back"
    summary = "a test strategy"

    def build(self, graph: Graph, question: str) -> NodeId:
        n = int(question.split("has ", 1)[1].split()[0])

        def answer(ctx: Any) -> Answer:
            details = {"fallback": "few-shot-cot", "fallback_reason": "no program"} if n % 2 == 0 else {"fallback": None}
            return Answer(answer=str(2 * n), text=f"The answer is {2 * n}.", details=details)

        return graph.function(answer, label="answer")


async def test_fallback_rate_in_summary_and_report(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    strategies = {"pal-like": SometimesFallsBack(), "cot": get_strategy("few-shot-cot")}
    console, _ = plain_console()
    result = await run_gsm8k(config(data, out, strategies=strategies), backend=ScriptedBackend([Rule(r".", scripted)]), console=console)
    f = result.report.summary["strategies"]["pal-like"]
    assert (f["fallbacks"], f["fallback_rate"], f["fallback_to"]) == (4, 0.5, {"few-shot-cot": 4})
    assert result.report.summary["strategies"]["cot"]["fallbacks"] == 0
    report = (out / "report.md").read_text()
    assert "## Fallbacks" in report and "| pal-like | 4 | 50.0% | few-shot-cot (4) |" in report
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["fallback"] for r in rows if r["strategy"] == "pal-like"} == {"few-shot-cot", None}


# -- secrets ------------------------------------------------------------------------------------------------

KEY = "sk-echoed-KEY-5c1e9b"
PASSWORD = "pw-in-url-77aa"


def test_a_server_echoing_the_key_gets_it_nowhere(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def echo_key(body: dict[str, Any], index: int) -> str:
        return f"Your key is {KEY}. The answer is 2."

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "run"
    # The key is also the model's id: it lands in the backend's description, the header line and report.md.
    with FakeOpenAIServer(KEY, responder=echo_key, record=False) as srv:
        srv.add_faults(Fault.status(400))  # one failed question: the retry command is printed
        url = srv.base_url.replace("http://", f"http://alice:{PASSWORD}@")
        cmd = ["bench", "gsm8k", "-s", "few-shot-cot", "--model", url, "--data", str(data), "--out", str(out)]
        assert main(cmd) == 1
        assert main(["report", str(out)]) == 0
    printed = capsys.readouterr()
    for stream in (printed.out, printed.err):
        assert KEY not in stream and PASSWORD not in stream
    assert "***" in printed.out and "--retry-errors" in printed.out
    written = sorted(p.name for p in out.iterdir())
    assert {"results.jsonl", "traces.jsonl", "run.json", "report.md", "summary.json"} <= set(written)
    for path in out.iterdir():
        text = path.read_bytes().decode(errors="replace")
        assert KEY not in text and PASSWORD not in text, path.name
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert any("***" in r["text"] for r in rows)


def test_a_folder_that_cannot_be_locked_is_said_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    out = tmp_path / "run"
    with RunLock(out.parent) as lock:
        assert lock.unsupported is not None and "cannot be locked" in lock.unsupported
    assert not (out.parent / "run.lock").exists()
