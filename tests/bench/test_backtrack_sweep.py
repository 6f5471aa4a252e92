"""The reward-model accuracy sweep: the simulated reward model, the crossing point, a small sweep and its plot."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from reasoner.bench.backtrack_sweep import Row, crossing, plot, report, sweep
from reasoner.data import load_gsm8k
from reasoner.simulators.reward import SimulatedRewardModel, mistake_locations
from reasoner.simulators.steps import StepSimulator

PROBLEMS = load_gsm8k("test")[:60]
SIM = StepSimulator(PROBLEMS, arith_rate=0.08, logic_rate=0.08, seed=2)
USABLE = [p for p in PROBLEMS if SIM.usable(p.question)]


def traces(n_per: int = 6) -> list[tuple[str, list[str]]]:
    rng = random.Random(1)
    return [(p.question, SIM.continue_from(SIM.problems[p.question], [], rng)) for p in USABLE for _ in range(n_per)]


def test_mistake_locations_are_a_distribution_with_no_mistake_as_none() -> None:
    locations = mistake_locations(SIM, traces())
    assert abs(sum(locations.values()) - 1) < 1e-9
    assert None in locations and locations[None] > 0.3 and any(isinstance(at, int) and w > 0 for at, w in locations.items())


@pytest.mark.parametrize("accuracy", [0.0, 0.3, 0.7, 1.0])
def test_the_simulated_reward_model_is_right_as_often_as_its_accuracy(accuracy: float) -> None:
    locations = mistake_locations(SIM, traces())
    model = SimulatedRewardModel(SIM, accuracy, locations, seed=4)
    drawn = traces(12)
    right = sum(model.locate(q, s) == model.truth(q, s) for q, s in drawn)
    # Binomial: within four standard deviations (exact at 0 and 1).
    spread = 4 * (accuracy * (1 - accuracy) / len(drawn)) ** 0.5
    assert abs(right / len(drawn) - accuracy) <= spread + 1e-9


def test_a_wrong_location_is_drawn_from_the_datas_distribution() -> None:
    # All the mass on step 1 (and none on "no mistake"): a 0%-accurate model names step 1 on a
    # clean trace, never a step the data never puts a mistake at.
    clean = [(q, s) for q, s in traces() if SIM.first_error(q, s) is None and len(s) >= 3]
    model = SimulatedRewardModel(SIM, 0.0, {None: 0.5, 1: 0.5}, seed=0)
    assert clean and all(model.locate(q, s) == 1 for q, s in clean)
    # Weights count: 3:1 between steps 0 and 1 on clean traces.
    model = SimulatedRewardModel(SIM, 0.0, {0: 0.75, 1: 0.25}, seed=0)
    said = Counter(model.locate(q, s) for q, s in clean)
    assert said[0] > said[1] > 0


def test_a_bad_accuracy_or_distribution_is_refused() -> None:
    with pytest.raises(ValueError, match="accuracy lies in"):
        SimulatedRewardModel(SIM, 1.5, {None: 1.0})
    with pytest.raises(ValueError, match="distribution of mistake locations"):
        SimulatedRewardModel(SIM, 0.5, {})


def row(x: float, fixed: int, broken: int) -> Row:
    return Row(verifier=f"simulated:{x}", accuracy=x, located=x, wrong=100, fixed=fixed, right=100, broken=broken)


def test_the_crossing_point_is_interpolated_between_grid_points() -> None:
    rows = [row(0.0, 0, 30), row(0.5, 10, 20), row(1.0, 40, 0)]
    # Δ✗ + Δ✓ is -0.1 at 0.5 and +0.4 at 1.0: zero a fifth of the way.
    assert crossing(rows) == pytest.approx(0.6)
    assert crossing([row(0.0, 0, 30), row(1.0, 10, 20)]) is None
    assert crossing([row(0.0, 20, 10), row(0.5, 5, 30), row(1.0, 40, 0)]) == pytest.approx(0.5 + 0.5 * 0.25 / 0.65)
    assert crossing([row(0.0, 40, 0), row(1.0, 50, 0)]) == 0.0


def test_a_small_sweep_has_the_papers_ends_and_writes_its_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = __import__("asyncio").run(sweep(USABLE[:40], SIM, accuracies=(0.0, 1.0), concurrency=8, progress=False))
    by = {r.verifier: r for r in result.rows}
    worst, best = by["simulated:0"], by["simulated:1"]
    assert worst.wrong == best.wrong > 0 and worst.right == best.right > 0  # the same first passes
    assert best.located == 1.0 and worst.located == 0.0
    # The oracle only touches traces with a wrong step (a right answer may still hide one), so it breaks fewer.
    assert best.broken < worst.broken and best.delta_wrong > worst.delta_wrong
    assert {"classifier", "arith"} <= set(by)
    path = plot(result, tmp_path / "sweep.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    report(result, path)
    shown = capsys.readouterr().out
    assert "Δaccuracy✗" in shown and "paper" in shown and "Δ✗ > |Δ✓| from X" in shown
