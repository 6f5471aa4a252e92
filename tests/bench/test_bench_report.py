"""The report of a run folder: intervals and error bars at the edges, what the data is called,
lm-eval's chain-of-thought strict rule and which task each strategy follows."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from reasoner.bench.lm_eval import cot_strict, task_for
from reasoner.bench.record import Record
from reasoner.bench.report import write_report
from reasoner.bench.stats import error_bar, wilson_interval

GSM8K_SIZE = 1319


def test_wilson_interval_holds_the_proportion_at_every_count() -> None:
    # 404 of the counts 1..1319 gave a bound a hair inside the observed 0% or 100% (float error),
    # and with it a negative error bar that matplotlib refuses.
    for n in range(1, GSM8K_SIZE + 1):
        for correct in (0, 1, n // 2, n - 1, n):
            low, high = wilson_interval(correct, n)
            p = correct / n
            assert 0.0 <= low <= p <= high <= 1.0, (correct, n)
            below, above = error_bar(p, (low, high))
            assert below >= 0.0 and above >= 0.0, (correct, n)
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_error_bar_is_never_negative_even_for_a_bound_off_by_rounding() -> None:
    assert error_bar(0.0, (5.551115123125783e-17, 0.56)) == (0.0, 0.56)
    assert error_bar(1.0, (0.7, 0.9999999999999999))[1] == 0.0


def make_run(folder: Path, outcomes: dict[str, list[bool]], *, split: str | None = "test",
             benchmark: str | None = "GSM8K", strategy: dict[str, str] | None = None) -> Path:  # fmt: skip
    folder.mkdir()
    n = max(len(v) for v in outcomes.values())
    settings: dict[str, Any] = {
        "task": "gsm8k",
        "model": {"spec": "scripted", "backend": {}},
        "strategies": {label: {"strategy": (strategy or {}).get(label, label)} for label in outcomes},
        "data": {"path": "x.jsonl", "split": split, "questions": n},
        "scoring": "ours",
    }
    if benchmark is not None:
        settings["benchmark"] = benchmark
    (folder / "run.json").write_text(json.dumps({"settings": settings, "sessions": []}))
    rows = [
        Record(strategy=label, id=f"q{i}", question="?", gold="1", prediction="1" if ok else "2", correct=ok,
               correct_ours=ok, correct_lm_eval_cot_strict=ok, calls=1, prompt_tokens=100, completion_tokens=20, started_at=i, finished_at=i + 1)  # fmt: skip
        for label, oks in outcomes.items()
        for i, ok in enumerate(oks)
    ]
    (folder / "results.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in rows))
    return folder


def test_report_and_plot_at_zero_and_full_accuracy(tmp_path: Path) -> None:
    # matplotlib is in the dev extra: not skipped where it is missing, since that is how this went unseen.
    run = make_run(tmp_path / "run", {"few-shot-cot": [False] * 3, "zero-shot-cot": [True] * 10})
    report = write_report(run)
    f = report.summary["strategies"]
    assert f["few-shot-cot"]["accuracy"] == 0.0 and f["few-shot-cot"]["ci95"][0] == 0.0
    assert f["zero-shot-cot"]["accuracy"] == 1.0 and f["zero-shot-cot"]["ci95"][1] == 1.0
    assert (run / "accuracy_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "summary.json").exists() and "![accuracy" in (run / "report.md").read_text()


def test_a_strategy_that_spent_no_tokens_is_still_on_the_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    run = make_run(tmp_path / "run", {"few-shot-cot": [False] * 3, "zero-shot-cot": [True] * 3})
    rows = [json.loads(line) | {"prompt_tokens": 0, "completion_tokens": 0} for line in (run / "results.jsonl").read_text().splitlines()]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scales: list[str] = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (scales.append(fig.axes[0].get_xscale()), savefig(fig, *a, **k)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was: "Data has no positive values, and therefore cannot be log-scaled"
        write_report(run)
    assert scales == ["linear"]  # on a log axis its points were not drawn at all


def test_data_that_is_not_gsm8k_is_named_by_the_data_and_shown_no_published_figures(tmp_path: Path) -> None:
    run = make_run(tmp_path / "svamp", {"few-shot-cot": [True, False]}, split=None, benchmark="svamp")
    report = write_report(run)
    md = (run / "report.md").read_text()
    assert report.summary["benchmark"] == "svamp" and md.startswith("# svamp benchmark")
    assert "GSM8K" not in md.split("## Settings")[0] and "PaLM 540B" not in md and "(split" not in md

    gsm8k = make_run(tmp_path / "gsm8k", {"few-shot-cot": [True, False]})
    md = (gsm8k / "report.md").read_text() if write_report(gsm8k) else ""
    assert md.startswith("# GSM8K benchmark") and "PaLM 540B" in md and "(split test)" in md


def test_a_run_from_before_benchmark_names_reads_as_gsm8k(tmp_path: Path) -> None:
    run = make_run(tmp_path / "old", {"few-shot-cot": [True]}, benchmark=None)
    assert write_report(run).summary["benchmark"] == "GSM8K"


def test_lm_eval_cot_strict_rule() -> None:
    gold = "Half of 48 is 24.\n#### 1,000"
    assert cot_strict("So 500 + 500 = 1000. The answer is 1,000.", gold) == ("1,000", True)
    # The first match; its number class takes the "." too when a character follows, as lm-eval's
    # does, and the exact match then ignores a trailing ".".
    assert cot_strict("The answer is 999. The answer is 1000.", gold) == ("999.", False)
    assert cot_strict("The answer is 1,000. Done.", gold) == ("1,000.", True)
    assert cot_strict("The answer is $1000.", gold) == (None, False)  # "$" is not in its number class
    assert cot_strict("The answer is 1000", gold) == ("100", False)  # its "." eats one character, as lm-eval's does
    assert cot_strict("#### 1000", gold) == (None, False)


def test_each_strategy_is_scored_by_the_lm_eval_task_its_prompt_follows(tmp_path: Path) -> None:
    assert task_for({"strategy": "few-shot-cot"}) == "gsm8k_cot"
    assert task_for({"strategy": "zero-shot-cot"}) == "gsm8k_cot_zeroshot"
    assert task_for({"strategy": "pal"}) == "gsm8k_cot"
    run = make_run(tmp_path / "run", {"cot": [True], "zs": [True]}, strategy={"cot": "few-shot-cot", "zs": "zero-shot-cot"})
    summary = write_report(run).summary
    assert summary["strategies"]["cot"]["lm_eval"] == {"task": "gsm8k_cot", "strict_rule": "lm-eval-cot-strict"}
    md = (run / "report.md").read_text()
    assert "| cot | `gsm8k_cot` (`lm-eval-cot-strict`) |" in md and "`gsm8k_cot_zeroshot`" in md


def test_records_from_before_the_cot_rule_are_said_not_silently_wrong(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"few-shot-cot": [True, True]})
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    for row in rows:
        del row["correct_lm_eval_cot_strict"], row["prediction_lm_eval_cot_strict"], row["fallback"]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = write_report(run, scoring="lm-eval-cot-strict")
    assert any("2 record(s) come from a version without the lm-eval-cot-strict rule" in n for n in report.notes)
    assert report.summary["strategies"]["few-shot-cot"]["fallbacks"] == 0
