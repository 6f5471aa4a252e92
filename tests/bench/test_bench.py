"""`reasoner bench gsm8k` against a real OpenAI-compatible server on 127.0.0.1 (the simulated
model of `bench_support`, so every figure of a run is known in advance): the statistics, one
uninterrupted reference run and its report, and runs killed (SIGKILL) at random points and
resumed, which must match it with nothing lost or written twice.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from reasoner.bench.record import Record
from reasoner.bench.report import paired_comparisons, write_report
from reasoner.bench.stats import mcnemar_exact, wilson_interval
from reasoner.cli.main import main
from reasoner.testing.fake_openai import FakeOpenAIServer

from bench_support import gsm8k_env, problems, slow_server  # noqa: F401 (fixtures)
from bench_support import (
    LIMIT, SECRET, SERVED, STRATEGIES, bench_argv, count_lines, env, expected, keys, python_cli, records, stable,
)

pytestmark = SERVED


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


