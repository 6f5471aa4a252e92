"""The self-consistency and DeepConf benchmarks: one table per seed and a summary over the seeds."""

from __future__ import annotations

from rich.console import Console

from reasoner.bench.measure import deepconf as dc_bench
from reasoner.bench.measure import self_consistency as sc_bench


def rendered(table) -> str:  # type: ignore[no-untyped-def]
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_summary_means_and_a_target_held_at_every_seed() -> None:
    per_seed = {
        0: {(16, "rule"): (-0.3, 0.62), (40, "rule"): (+0.1, 0.75)},
        1: {(16, "rule"): (-0.7, 0.64), (40, "rule"): (-0.1, 0.77)},
    }
    text = rendered(sc_bench.summary(per_seed))
    assert "-0.30 / -0.70" in text and "-0.50" in text and "63.0%" in text
    rows = [line for line in text.splitlines() if "rule" in line]
    assert "missed" in rows[0] and "met" in rows[1]  # 0.7 points lost at seed 1, cap 16


def test_deepconf_summary() -> None:
    text = rendered(dc_bench.summary({0: {16: (0.2, 0.55)}, 2: {16: (-0.1, 0.45)}}))
    assert "+0.20 / -0.10" in text and "50.0%" in text and "missed" in text


def test_both_benchmarks_run_every_seed(capsys) -> None:  # type: ignore[no-untyped-def]
    sc_bench.main(["--questions", "4", "--caps", "6", "--seeds", "0", "1"])
    dc_bench.main(["--questions", "3", "--caps", "6", "--seeds", "0", "1"])
    out = capsys.readouterr().out
    assert out.count("seed 0)") == 2 and out.count("seed 1)") == 2
    assert "adaptive stopping over seeds 0, 1" in out and "online DeepConf over seeds 0, 1" in out
