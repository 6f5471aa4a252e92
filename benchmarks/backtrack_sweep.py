"""How accurate must the mistake-finder be? Tyen et al. 2023's sweep, on the step simulator.

    python -m reasoner.bench.backtrack_sweep [--questions 1000] [--classifier PATH] [--plot docs/backtrack_sweep.png]

Backtracking (one correction, 4 resamples) is run on GSM8K test questions written as steps by the
step-level simulated model (`reasoner.simulators.steps`, arithmetic and logic slips), served over
real HTTP, with three kinds of mistake location:
* a simulated reward model of accuracy X = 0, 10, ..., 100% (`reasoner.simulators.reward`): the
  true first mistake (or "no mistake") with probability X, else a location drawn from the data's
  distribution of mistake locations, as the paper drew it;
* the trained mistake-finder (`classifier`, or `classifier:PATH`);
* the calculator (`arith`), for reference.
Every run starts from the same first-pass traces (same seeds), so for each, Δaccuracy✗ is the
share of initially wrong answers made right, Δaccuracy✓ minus the share of initially right
answers made wrong. The paper's shape: Δ✗ grows with X while Δ✓ is a loss that vanishes at 100%,
and Δ✗ outweighs |Δ✓| from about 60-70% on. The crossing point is stated, and a plot written.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from reasoner.answers import is_correct
from reasoner.backends.http import OpenAIBackend
from reasoner.data import Problem, load_gsm8k
from reasoner.simulators.reward import SimulatedRewardModel, mistake_locations
from reasoner.simulators.steps import StepSimulator
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.types import Solution
from reasoner.verifiers import open_verifier, register, split_steps

console = Console(width=160)
ACCURACIES = tuple(x / 10 for x in range(11))
PAPER = "Δ✗ grows with accuracy, |Δ✓| shrinks to 0 at 100%; Δ✗ > |Δ✓| from about 60-70% (Tyen et al. 2023, Fig. 4)"


class Row(BaseModel):
    verifier: str
    #: The simulated accuracy X; None for a real locator.
    accuracy: float | None
    #: How often the first verdict named the true first mistake (or "no mistake"), measured.
    located: float
    wrong: int
    fixed: int
    right: int
    broken: int
    #: Of the initially wrong / right traces, those whose first verdict was right.
    located_wrong: int = 0
    located_right: int = 0
    #: Initially wrong traces whose first slip is a logic slip, and those of them made right.
    logic: int = 0
    logic_fixed: int = 0

    @property
    def delta_wrong(self) -> float:
        return self.fixed / self.wrong if self.wrong else 0.0

    @property
    def delta_right(self) -> float:
        return -self.broken / self.right if self.right else 0.0

    @property
    def net(self) -> float:
        return (self.fixed - self.broken) / max(self.wrong + self.right, 1)


def crossing(rows: Sequence[Row], net: bool = False) -> float | None:
    """The accuracy from which Δ✗ > |Δ✓| (with `net`, the net change > 0) holds at every grid point
    on, linearly interpolated between the last grid point where it fails and the next; None where
    it does not hold even at the top of the grid."""
    grid = sorted((r for r in rows if r.accuracy is not None), key=lambda r: r.accuracy or 0.0)
    gaps = [(r.accuracy or 0.0, r.net if net else r.delta_wrong + r.delta_right) for r in grid]
    if not gaps or gaps[-1][1] <= 0:
        return None
    k = len(gaps) - 1
    while k > 0 and gaps[k - 1][1] > 0:
        k -= 1
    if k == 0:
        return gaps[0][0]
    (x0, g0), (x1, g1) = gaps[k - 1], gaps[k]
    return x0 + (x1 - x0) * (-g0) / (g1 - g0)


async def backtrack_all(backend: OpenAIBackend, problems: Sequence[Problem], spec: str, rounds: int, retries: int,
                        concurrency: int) -> list[Solution]:  # fmt: skip
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, p: Problem) -> Solution:
        async with gate:
            strategy = get_strategy("backtrack", verifier=spec, max_backtracks=rounds, retries=retries, seed=i)
            return await strategy.solve(p.question, backend)

    return await asyncio.gather(*(one(i, p) for i, p in enumerate(problems)))


def tally(spec: str, accuracy: float | None, sim: StepSimulator, problems: Sequence[Problem], solutions: Sequence[Solution]) -> Row:
    counts = {"wrong": 0, "fixed": 0, "right": 0, "broken": 0, "located_wrong": 0, "located_right": 0, "logic": 0, "logic_fixed": 0}
    for p, s in zip(problems, solutions):
        if s.error:
            raise RuntimeError(f"{spec} on {p.id}: {s.error}")
        first = split_steps(s.details["initial_text"])
        truth = sim.first_error(p.question, first)
        said = s.details["backtracks"][0]["step"] if s.details["backtracks"] else s.details["first_error"] if not s.details["rounds"] else None
        before, after = is_correct(s.details["initial_answer"], p.gold), is_correct(s.answer, p.gold)
        counts["right" if before else "wrong"] += 1
        counts["located_right" if before else "located_wrong"] += said == (None if truth is None else min(truth[0], len(first) - 1))
        counts["fixed"] += (not before) and after
        counts["broken"] += before and not after
        if not before and truth is not None and truth[1] == "logic":
            counts["logic"] += 1
            counts["logic_fixed"] += after
    located = (counts["located_wrong"] + counts["located_right"]) / max(counts["wrong"] + counts["right"], 1)
    return Row(verifier=spec, accuracy=accuracy, located=located, **counts)


class Sweep(BaseModel):
    questions: int
    rows: list[Row]
    locations: dict[str, float]

    @property
    def crossing(self) -> float | None:
        return crossing(self.rows)

    @property
    def net_crossing(self) -> float | None:
        return crossing(self.rows, net=True)


async def sweep(problems: Sequence[Problem], sim: StepSimulator, *, classifier: str = "classifier", rounds: int = 1, retries: int = 4,
                accuracies: Sequence[float] = ACCURACIES, concurrency: int = 16, seed: int = 0, progress: bool = True) -> Sweep:  # fmt: skip
    # The data's distribution of first-mistake locations, on traces the simulator writes for these questions.
    rng = random.Random(seed)
    drawn = [(p.question, sim.continue_from(sim.problems[p.question], [], rng)) for p in problems for _ in range(8)]
    locations = mistake_locations(sim, drawn)
    register("simulated", lambda arg: SimulatedRewardModel(sim, float(arg or 1.0), locations, seed=seed))
    open_verifier(classifier)  # a bad model file fails here, before any run
    specs = [(f"simulated:{x:g}", x) for x in accuracies] + [(classifier, None), ("arith", None)]
    rows = []
    with FakeOpenAIServer(responder=sim.respond, record=False) as server:
        backend = OpenAIBackend(server.base_url, "fake-model", max_in_flight=64)
        try:
            for spec, accuracy in specs:
                rows.append(tally(spec, accuracy, sim, problems, await backtrack_all(backend, problems, spec, rounds, retries, concurrency)))
                if progress:
                    console.print(f"[dim]{spec}: Δ✗ {100 * rows[-1].delta_wrong:+.1f}%, Δ✓ {100 * rows[-1].delta_right:+.1f}%[/]")
        finally:
            await backend.aclose()
    shown = {("none" if at is None else str(at)): round(w, 4) for at, w in sorted(locations.items(), key=lambda kv: -1 if kv[0] is None else kv[0])}
    return Sweep(questions=len(problems), rows=rows, locations=shown)


def table(result: Sweep) -> Table:
    t = Table(title=f"Backtracking with a reward model of accuracy X, {result.questions} GSM8K test questions on the step simulator")
    for column in ("reward model", "located: all / wrong / right", "wrong", "Δaccuracy✗", "logic-slip Δ✗", "right", "Δaccuracy✓",
                   "Δ✗ > |Δ✓|", "net Δ", "paper's shape"):  # fmt: skip
        t.add_column(column, justify="left" if column in ("reward model", "paper's shape") else "right")
    for r in result.rows:
        paper = "" if r.accuracy is None else ("Δ✗ < |Δ✓|" if r.accuracy < 0.6 else "crossing" if r.accuracy < 0.7 else "Δ✗ > |Δ✓|")
        t.add_row(
            r.verifier, f"{100 * r.located:.0f}% / {_pct(r.located_wrong, r.wrong)} / {_pct(r.located_right, r.right)}", str(r.wrong),
            f"{100 * r.delta_wrong:+.1f}%", f"+{_pct(r.logic_fixed, r.logic)} of {r.logic}", str(r.right), f"{100 * r.delta_right:+.1f}%",
            "yes" if r.delta_wrong > -r.delta_right else "no", f"{100 * r.net:+.1f}%", paper,
        )  # fmt: skip
    return t


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "–"


def plot(result: Sweep, path: Path) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [r for r in result.rows if r.accuracy is not None]
    xs = [100 * (r.accuracy or 0.0) for r in grid]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    ax.plot(xs, [100 * r.delta_wrong for r in grid], "o-", color="tab:green", label="Δaccuracy✗ (initially wrong, made right)")
    ax.plot(xs, [100 * r.delta_right for r in grid], "o-", color="tab:red", label="Δaccuracy✓ (initially right, made wrong)")
    ax.plot(xs, [-100 * r.delta_right for r in grid], ":", color="tab:red", alpha=0.6, label="|Δaccuracy✓|")
    for r, marker in ((r, m) for r in result.rows if r.accuracy is None for m in ["*" if r.verifier.startswith("classifier") else "s"]):
        x = 100 * r.located
        ax.plot([x], [100 * r.delta_wrong], marker, color="tab:green", markersize=12 if marker == "*" else 7)
        ax.plot([x], [100 * r.delta_right], marker, color="tab:red", markersize=12 if marker == "*" else 7)
        ax.annotate(r.verifier.split(":")[0], (x, 100 * r.delta_wrong), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if result.crossing is not None:
        ax.axvline(100 * result.crossing, color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"Δ✗ > |Δ✓| from {100 * result.crossing:.0f}%", (100 * result.crossing, 5), xytext=(4, 0),
                    textcoords="offset points", fontsize=8, color="grey")  # fmt: skip
    ax.axvspan(60, 70, color="tab:blue", alpha=0.08, label="the paper's crossing (Δ✗ > |Δ✓| from 60-70%)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("reward model accuracy X (%) (markers: a real locator, at its measured accuracy)")
    ax.set_ylabel("change in accuracy (%)")
    ax.set_title(f"Backtracking on the step simulator, {result.questions} questions (cf. Tyen et al. 2023, Fig. 4)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def report(result: Sweep, path: Path | None) -> None:
    console.print(table(result))
    console.print(f"mistake locations in the data (first mistake at step i): {result.locations}", highlight=False)
    console.print(f"paper: {PAPER}", highlight=False)
    cross = result.crossing
    console.print("here: " + (f"Δ✗ > |Δ✓| from X ≈ {100 * cross:.0f}% on (linear between grid points)" if cross is not None
                              else "Δ✗ never outweighs |Δ✓|, even at 100%"), highlight=False)  # fmt: skip
    net = result.net_crossing
    console.print("here, net of both (weighted by how many traces were right and wrong): "
                  + (f"a gain from X ≈ {100 * net:.0f}% on" if net is not None else "never a gain"), highlight=False)  # fmt: skip
    for r in result.rows:
        if r.accuracy is None:
            console.print(f"{r.verifier}: locates {100 * r.located:.0f}% of first passes; Δ✗ {100 * r.delta_wrong:+.1f}% vs Δ✓ "
                          f"{100 * r.delta_right:+.1f}%: {'gains more than it loses' if r.delta_wrong > -r.delta_right else 'loses more than it gains'}",
                          highlight=False)  # fmt: skip
    if path is not None:
        console.print(f"plot: {path}", highlight=False)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reasoner.bench.backtrack_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000, help="GSM8K test questions (the first the simulator can write)")
    parser.add_argument("--classifier", default="classifier", help="the trained locator's spec (default: the shipped model)")
    parser.add_argument("--arith-rate", type=float, default=0.05, help="arithmetic slips per calculation")
    parser.add_argument("--logic-rate", type=float, default=0.05, help="logic slips per calculation")
    parser.add_argument("--rounds", type=int, default=1, help="corrections per question (the paper backtracks once)")
    parser.add_argument("--retries", type=int, default=4, help="resamples of the rejected step")
    parser.add_argument("--plot", default="docs/backtrack_sweep.png", help="where to write the plot ('' for none)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Sweep:
    args = parse(argv)
    pool = load_gsm8k("test")[: args.questions * 2]
    sim = StepSimulator(pool, arith_rate=args.arith_rate, logic_rate=args.logic_rate, seed=args.seed)
    problems = [p for p in pool if sim.usable(p.question)][: args.questions]
    console.print(f"{len(problems)} questions; slips per calculation: arithmetic {args.arith_rate}, logic {args.logic_rate}; "
                  f"{args.rounds} correction(s), {args.retries} resamples; seed {args.seed}", highlight=False)  # fmt: skip
    result = asyncio.run(sweep(problems, sim, classifier=args.classifier, rounds=args.rounds, retries=args.retries,
                               concurrency=args.concurrency, seed=args.seed))  # fmt: skip
    report(result, plot(result, Path(args.plot)) if args.plot else None)
    return result


if __name__ == "__main__":
    main()
