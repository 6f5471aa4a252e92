"""Scaling curves: self-consistency at k by resampling, the Pareto frontier, and `reasoner curves` on a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasoner.bench.curves import pareto, sc_curve
from reasoner.cli.main import main
from reasoner.testing.fake_openai import FakeOpenAIServer
from sim_support import SERVED, data  # noqa: F401 - the simulated model's questions

pytestmark = SERVED


def test_sc_curve_votes_resampled_subsets() -> None:
    answers = {
        "sure": ["7", "7", "7"],
        "two_of_three": ["5", "5", "9"],  # k=1: right 2/3 of the time; k=3: the majority, right
        "never": ["1", None, "2"],
    }
    golds = {"sure": "7", "two_of_three": "5", "never": "3"}
    points = sc_curve(answers, golds, resamples=3000, seed=1)
    assert [p.k for p in points] == [1, 2, 3]
    assert points[0].accuracy == pytest.approx((1 + 2 / 3 + 0) / 3, abs=0.02)
    assert points[2].accuracy == pytest.approx(2 / 3)  # all samples: one vote, no resampling
    assert all(p.low <= p.accuracy <= p.high for p in points)
    # k=2 of ["5","5","9"]: {5,5} wins; {5,9} is a tie broken at random: 1/3 + 2/3 * 1/2 = 2/3.
    assert points[1].accuracy == pytest.approx((1 + 2 / 3) / 3, abs=0.02)


def test_at_k_equal_to_all_samples_a_tie_goes_to_the_first_seen_as_in_the_strategy() -> None:
    answers = {f"first-right{i}": ["9", "5", "5", "9"] for i in range(20)} | {f"first-wrong{i}": ["5", "9"] for i in range(20)}
    points = sc_curve(answers, {q: "9" for q in answers}, resamples=2000)
    assert points[-1].k == 2 and points[-1].accuracy == 0.5  # each tie to its first sample: 20 right, 20 wrong
    answers = {f"q{i}": ["9", "5"] for i in range(40)}
    assert sc_curve(answers, {q: "9" for q in answers})[-1].accuracy == 1.0
    assert sc_curve(answers, {q: "9" for q in answers})[0].accuracy == pytest.approx(0.5, abs=0.03)


def test_sc_curve_stops_at_the_fewest_samples_and_refuses_no_resamples() -> None:
    points = sc_curve({"a": ["1", "1", "1", "1"], "b": ["2", "2"]}, {"a": "1", "b": "2"})
    assert [p.k for p in points] == [1, 2]
    with pytest.raises(ValueError, match="resamples must be at least 1"):
        sc_curve({"a": ["1"]}, {"a": "1"}, resamples=0)


def figures(tokens_in: float, acc: float) -> dict[str, float]:
    return {"n": 10, "prompt_tokens_per_question": tokens_in, "completion_tokens_per_question": 0.0, "accuracy": acc}


def test_pareto_marks_the_undominated() -> None:
    summary = {
        "strategies": {
            "cheap": figures(100, 0.5),
            "better": figures(400, 0.7),
            "worse and dearer": figures(500, 0.6),
            "same cost, less right": figures(400, 0.65),
            "empty": {**figures(1, 1.0), "n": 0},
        }
    }
    points = {p.label: p.frontier for p in pareto(summary)}
    assert points == {"cheap": True, "better": True, "worse and dearer": False, "same cost, less right": False}


def test_curves_command_on_a_simulated_run(server: FakeOpenAIServer, data: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "run"
    assert main([
        "bench", "gsm8k", "--model", server.base_url, "--data", str(data), "--limit", "40", "--out", str(out),
        "-s", "self-consistency:samples=8", "-s", "self-consistency:samples=8,stopping=beta", "-s", "zero-shot-cot", "--seed", "0",
    ]) == 0
    assert main(["curves", str(out), "--resamples", "50"]) == 0
    curves = json.loads((out / "curves.json").read_text())
    # Only the variant that drew all its samples has a k-curve; every variant is on the Pareto plot.
    assert list(curves["self_consistency"]) == ["self-consistency:samples=8"]
    k_curve = curves["self_consistency"]["self-consistency:samples=8"]
    assert [p["k"] for p in k_curve] == list(range(1, 9))
    summary = json.loads((out / "summary.json").read_text())
    # k = K is the vote of all samples: the run's own SC@8 (up to ties, which the simulator rarely makes).
    assert k_curve[-1]["accuracy"] == pytest.approx(summary["strategies"]["self-consistency:samples=8"]["accuracy"], abs=0.05)
    assert {p["label"] for p in curves["pareto"]} == set(summary["strategies"])
    for png in ("sc_curve.png", "pareto.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_of_a_folder_that_is_no_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["curves", str(tmp_path)]) == 1
    assert "is not a benchmark run: it has no run.json" in capsys.readouterr().err


def test_curves_from_a_bank_alone_match_the_run_that_recorded_it(server: FakeOpenAIServer, data: Path, tmp_path: Path) -> None:  # noqa: F811
    out, bank = tmp_path / "run", tmp_path / "sc.bank"
    assert main([
        "bench", "gsm8k", "--model", server.base_url, "--data", str(data), "--limit", "30", "--out", str(out),
        "-s", "self-consistency:samples=6", "--seed", "0", "--bank", str(bank),
    ]) == 0
    assert main(["curves", str(out), "--resamples", "400"]) == 0
    assert main(["curves", str(bank), "--data", str(data), "--resamples", "400", "--out", str(tmp_path / "bank-curves")]) == 0
    from_run = json.loads((out / "curves.json").read_text())["self_consistency"]["self-consistency:samples=6"]
    from_bank = json.loads((tmp_path / "bank-curves" / "curves.json").read_text())
    assert from_bank["questions"] == 30
    points = from_bank["self_consistency"]["sc.bank"]
    assert [p["k"] for p in points] == list(range(1, 7))
    for a, b in zip(points, from_run):  # the same samples: equal up to the resampling's noise
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=0.04)
    assert (tmp_path / "bank-curves" / "sc_curve.png").exists()


def test_curves_of_a_bank_need_questions_it_holds(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    junk = tmp_path / "junk.bank"
    junk.write_bytes(b"no database here" * 64)
    assert main(["curves", str(junk), "--data", str(data)]) == 1
    assert "junk.bank: not a sample bank" in capsys.readouterr().err
