"""The test-time-compute frontier at equal cost: accuracy against tokens per question for mcts,
particle-filter, beam-search, best-of-n, self-consistency and few-shot-cot, each at two or three
budgets, on the step-level simulated model over real HTTP.

    python -m reasoner.bench.measure.frontier [--questions 100] [--no-judge] [--out docs/frontier.png]

GSM8K test questions are written as steps by `reasoner.simulators.steps` with arithmetic and logic
slips (15% and 8% of calculations by default: at the 6% and 3% of `measure.verifiers` most
strategies reach 95-100% and the table cannot tell them apart), served by
`reasoner.testing.fake_openai` and called through the real HTTP backend and engine, every strategy
seeded by the question's index. The verifier-guided strategies use the `arith` checker, which sees
arithmetic slips and not logic ones (a wrong operand with sound arithmetic); each is also run at
its middle budget with the simulator's judge (`judge`: the same server asked whether each step is
right, right 90% of the time, 5 sampled votes a judgement, its tokens counted; `--no-judge` leaves
these out). The judge's requests carry no seed, so its rows vary by a point or two between runs;
the others are the same every run. Tokens are the server's count (prompt words once a request
whatever its n, plus completion words), the same measure for every strategy. Prints one row per
strategy and budget, and draws them on the runner's Pareto plot
(`reasoner.bench.curves.plot_pareto`): `--out` against all tokens, and beside it (`_completion`)
against completion tokens alone, the cost where a server's prefix cache makes a repeated prompt
nearly free (the step-level searches send their prompt again for every step).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from reasoner.answers import is_correct
from reasoner.backends.http import OpenAIBackend
from reasoner.bench.curves import pareto, plot_pareto
from reasoner.bench.measure.verifiers import run_all
from reasoner.bench.stats import wilson_interval
from reasoner.data import Problem, load_gsm8k
from reasoner.simulators.steps import StepSimulator
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer

console = Console(width=160)

#: (method, budget, options): each strategy at two or three budgets; `verifier` where it takes one.
PLANS: list[tuple[str, str, dict[str, Any]]] = [
    ("few-shot-cot", "k=2", {"k": 2, "temperature": 0.7}),
    ("few-shot-cot", "k=4", {"k": 4, "temperature": 0.7}),
    ("self-consistency", "4", {"samples": 4}),
    ("self-consistency", "8", {"samples": 8}),
    ("self-consistency", "16", {"samples": 16}),
    ("best-of-n", "4", {"samples": 4}),
    ("best-of-n", "8", {"samples": 8}),
    ("best-of-n", "16", {"samples": 16}),
    ("beam-search", "2x2", {"width": 2, "expansions": 2}),
    ("beam-search", "4x2", {"width": 4, "expansions": 2}),
    ("beam-search", "4x4", {"width": 4, "expansions": 4}),
    ("particle-filter", "4", {"particles": 4}),
    ("particle-filter", "8", {"particles": 8}),
    ("particle-filter", "16", {"particles": 16}),
    ("mcts", "8", {"iterations": 8}),
    ("mcts", "16", {"iterations": 16}),
    ("mcts", "32", {"iterations": 32}),
]
#: With --judge: the middle budget of each verifier-guided strategy, judged by the simulated judge.
JUDGED = ["best-of-n 8", "beam-search 4x2", "particle-filter 8", "mcts 16"]
GUIDED = {"best-of-n", "beam-search", "particle-filter", "mcts"}


@dataclass
class Row:
    method: str
    budget: str
    verifier: str
    n: int
    correct: int
    prompt_tokens: float  # per question
    completion_tokens: float
    requests: float
    errors: int

    @property
    def label(self) -> str:
        judged = " +judge" if self.verifier == "judge" else ""  # arith, the default, goes unsaid
        return f"{self.method} {self.budget}{judged}"

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens


async def measure(problems: Sequence[Problem], sim: StepSimulator, judge: bool, concurrency: int) -> list[Row]:
    plans = [(m, b, o, "arith" if m in GUIDED else "") for m, b, o in PLANS]
    if judge:
        plans += [(m, b, {**o, "verifier": "judge"}, "judge") for m, b, o in PLANS if f"{m} {b}" in JUDGED]
    rows = []
    with FakeOpenAIServer(responder=sim.respond, record=False) as server:
        backend = OpenAIBackend(server.base_url, "fake-model", max_in_flight=64)
        try:
            for method, budget, options, verifier in plans:
                started = time.perf_counter()
                make = lambda i, m=method, o=options: get_strategy(m, seed=i, **o)  # noqa: E731
                served = server.completions_served
                solutions = await run_all(backend, problems, make, concurrency)
                n = len(problems)
                rows.append(Row(
                    method, budget, verifier, n, sum(is_correct(s.answer, p.gold) for s, p in zip(solutions, problems)),
                    sum(s.usage.prompt_tokens for s in solutions) / n, sum(s.usage.completion_tokens for s in solutions) / n,
                    (server.completions_served - served) / n, sum(s.error is not None for s in solutions),
                ))  # fmt: skip
                console.print(f"[dim]{rows[-1].label}: {time.perf_counter() - started:.1f} s[/]")
        finally:
            await backend.aclose()
    return rows


def table(rows: Sequence[Row], title: str) -> Table:
    out = Table(title=title)
    for col in ("strategy", "budget", "verifier", "accuracy", "95% interval", "tokens / question", "completion tokens / q",
                "requests / q", "frontier: tokens", "frontier: completion"):  # fmt: skip
        out.add_column(col, justify="right")
    front = {p.label for p in pareto(summary(rows)) if p.frontier}
    front_completion = {p.label for p in pareto(summary(rows, completion_only=True)) if p.frontier}
    for r in rows:
        low, high = wilson_interval(r.correct, r.n)
        out.add_row(
            r.method, r.budget, r.verifier or "–", f"{100 * r.correct / r.n:.1f}%", f"{100 * low:.0f}–{100 * high:.0f}%",
            f"{r.tokens:,.0f}", f"{r.completion_tokens:,.0f}", f"{r.requests:.1f}", "yes" if r.label in front else "",
            "yes" if r.label in front_completion else "",
        )  # fmt: skip
        if r.errors:
            out.add_row(f"  ({r.errors} errors)", *[""] * 9)
    return out


def summary(rows: Sequence[Row], completion_only: bool = False) -> dict[str, Any]:
    """The rows as the runner's summary holds strategies, for its Pareto functions; with
    `completion_only`, prompts count nothing (as a server whose prefix cache serves repeats)."""
    return {"strategies": {r.label: {"n": r.n, "accuracy": r.correct / r.n, "prompt_tokens_per_question": 0 if completion_only else r.prompt_tokens,
                                     "completion_tokens_per_question": r.completion_tokens} for r in rows}}  # fmt: skip


async def main(args: argparse.Namespace) -> list[Row]:
    pool = load_gsm8k("test")[: args.questions * 2]
    sim = StepSimulator(pool, arith_rate=args.arith_rate, logic_rate=args.logic_rate, seed=args.seed)
    problems = [p for p in pool if sim.usable(p.question)][: args.questions]
    title = (f"{len(problems)} GSM8K questions on the step simulator: slips per calculation arithmetic {args.arith_rate}, "
             f"logic {args.logic_rate}, seed {args.seed}")  # fmt: skip
    started = time.perf_counter()
    rows = await measure(problems, sim, args.judge, args.concurrency)
    console.print(table(rows, title))
    console.print(f"[dim]{time.perf_counter() - started:.1f} s in all[/]")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        title = f"step simulator, {len(problems)} questions"
        plot_pareto(pareto(summary(rows)), title, args.out, size=(10, 6.5))
        completion = args.out.with_name(f"{args.out.stem}_completion{args.out.suffix}")
        plot_pareto(pareto(summary(rows, completion_only=True)), title, completion, tokens="completion only", size=(10, 6.5))
        console.print(f"plots: {args.out} (prompt + completion tokens), {completion} (completion tokens)")
    return rows


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reasoner.bench.measure.frontier", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100, help="GSM8K test questions (the first ones the simulator can write)")
    parser.add_argument("--arith-rate", type=float, default=0.15, help="arithmetic slips per calculation")
    parser.add_argument("--logic-rate", type=float, default=0.08, help="logic slips per calculation")
    parser.add_argument("--judge", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the guided strategies at their middle budget with the simulated judge")
    parser.add_argument("--concurrency", type=int, default=16, help="questions in flight")
    parser.add_argument("--seed", type=int, default=0, help="the simulator's seed")
    parser.add_argument("--out", type=lambda s: Path(s) if s else None, default=Path("docs/frontier.png"), help="where to draw the plot ('' for none)")
    args = parser.parse_args(argv)
    if args.questions < 1:
        parser.error(f"--questions must be at least 1, got {args.questions}")
    return args


def run(argv: Sequence[str] | None = None) -> list[Row]:
    return asyncio.run(main(parse(argv)))


if __name__ == "__main__":
    run()
