"""Verifiers and the strategies on them, on the step-level simulated model over real HTTP.

    python -m reasoner.bench.measure.verifiers [--questions 300] [--only checker|backtrack|compute] [--seed 0]

GSM8K test questions ($REASONER_GSM8K) are written as steps by `reasoner.simulators.steps`,
with arithmetic and logic slips; the model is served by `reasoner.testing.fake_openai` and called
through the real HTTP backend and engine. Questions whose gold annotations are not plain
arithmetic are left out (the simulator cannot write them). Three benchmarks:

1. checker: the arithmetic checker's first-error location against the simulator's truth, by the
   kind of the first slip (traces drawn directly from the simulator, no HTTP).
2. backtrack: Tyen et al.'s Δaccuracy✗ (initially wrong answers made right) and Δaccuracy✓
   (initially right answers made wrong), with the arithmetic checker and with simulated
   verifiers that name the true location 60..100% of the time, else a random wrong one.
3. compute: accuracy against completion tokens for self-consistency, best-of-N, beam search and
   DIVERSE (its weighted vote and plain majority counted on the same samples).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from reasoner.answers import is_correct
from reasoner.backends.http import OpenAIBackend
from reasoner.data import Problem, load_gsm8k
from reasoner.strategy import Strategy, get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.simulators.locator import LocatorVerifier
from reasoner.simulators.steps import StepSimulator
from reasoner.tools.arith_check import check_steps
from reasoner.types import Solution
from reasoner.verifiers import register, split_steps

console = Console(width=200)
ACCURACIES = (0.6, 0.7, 0.8, 0.9, 1.0)


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


# -- 1. the checker's first-error location ---------------------------------------------------------


def checker(sim: StepSimulator, problems: Sequence[Problem], traces: int, seed: int) -> None:
    rows: dict[str, Counter[str]] = {kind: Counter() for kind in ("arith", "logic", "none")}
    for p in problems:
        problem = sim.problems[p.question]
        for t in range(traces):
            steps = sim.continue_from(problem, [], random.Random(f"{seed}:{p.id}:{t}"))
            truth = sim.first_error(p.question, steps)
            flagged = check_steps(steps).first_error
            row = rows["none" if truth is None else truth[1]]
            row["traces"] += 1
            row["flagged"] += flagged is not None
            row["right"] += truth is not None and flagged == truth[0]
    table = Table(title=f"1. Arithmetic checker, first-error location ({len(problems)} questions x {traces} traces)")
    for col in ("first slip", "traces", "flagged", "at the true step", "recall", "precision"):
        table.add_column(col, justify="right")
    total: Counter[str] = Counter()
    for kind, row in rows.items():
        total.update(row)
        recall = pct(row["right"], row["traces"]) if kind != "none" else "–"
        table.add_row(kind, str(row["traces"]), str(row["flagged"]), str(row["right"]), recall, pct(row["right"], row["flagged"]))
    table.add_row("all", str(total["traces"]), str(total["flagged"]), str(total["right"]), "", pct(total["right"], total["flagged"]))
    console.print(table)


# -- running strategies over HTTP ---------------------------------------------------------------------


async def run_all(
    backend: OpenAIBackend, problems: Sequence[Problem], make: Callable[[int], Strategy], concurrency: int
) -> list[Solution]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, p: Problem) -> Solution:
        async with gate:
            return await make(i).solve(p.question, backend)

    return await asyncio.gather(*(one(i, p) for i, p in enumerate(problems)))


# -- 2. backtracking ---------------------------------------------------------------------------------


async def backtrack(backend: OpenAIBackend, sim: StepSimulator, problems: Sequence[Problem], concurrency: int) -> None:
    register("located", lambda arg: LocatorVerifier(sim, float(arg or 1.0)))
    table = Table(title=f"2. Backtracking (Tyen et al.), {len(problems)} questions, retries 4")
    for col in ("verifier", "backtracks", "initially wrong", "Δaccuracy✗", "initially right", "Δaccuracy✓",
                "arith-slip answers fixed", "logic-slip answers fixed", "accuracy before → after"):  # fmt: skip
        table.add_column(col, justify="right")
    runs = [("arith", 3), ("arith", 1)] + [(f"located:{a}", 1) for a in ACCURACIES]
    for spec, rounds in runs:
        solutions = await run_all(
            backend, problems, lambda i: get_strategy("backtrack", verifier=spec, max_backtracks=rounds, seed=i), concurrency
        )
        c: Counter[str] = Counter()
        for p, s in zip(problems, solutions):
            if s.error:
                c["errors"] += 1
                continue
            before = is_correct(s.details["initial_answer"], p.gold)
            after = is_correct(s.answer, p.gold)
            c["before"] += before
            c["after"] += after
            c["wrong"] += not before
            c["fixed"] += (not before) and after
            c["right"] += before
            c["broken"] += before and not after
            first = sim.first_error(p.question, split_steps(s.details["initial_text"]))
            if first is not None and not before:
                c[f"{first[1]}"] += 1
                c[f"{first[1]}_fixed"] += after
        n = len(problems) - c["errors"]
        table.add_row(
            spec, str(rounds), str(c["wrong"]), "+" + pct(c["fixed"], c["wrong"]), str(c["right"]), "−" + pct(c["broken"], c["right"]),
            f"{c['arith_fixed']}/{c['arith']} = {pct(c['arith_fixed'], c['arith'])}",
            f"{c['logic_fixed']}/{c['logic']} = {pct(c['logic_fixed'], c['logic'])}",
            f"{pct(c['before'], n)} → {pct(c['after'], n)}" + (f" ({c['errors']} errors)" if c["errors"] else ""),
        )  # fmt: skip
    console.print(table)


# -- 3. accuracy against tokens ------------------------------------------------------------------------


async def compute(backend: OpenAIBackend, problems: Sequence[Problem], concurrency: int) -> None:
    table = Table(title=f"3. Accuracy against completion tokens, {len(problems)} questions (arith verifier)")
    for col in ("method", "samples", "accuracy", "completion tokens / question", "requests / question"):
        table.add_column(col, justify="right")

    def add(method: str, samples: str, solutions: Sequence[Solution], correct: Sequence[bool] | None = None) -> None:
        right = correct if correct is not None else [is_correct(s.answer, p.gold) for s, p in zip(solutions, problems)]
        n = len(problems)
        tokens = sum(s.usage.completion_tokens for s in solutions) / n
        calls = sum(s.usage.calls for s in solutions) / n
        table.add_row(method, samples, pct(sum(right), n), f"{tokens:.0f}", f"{calls:.1f}")

    plans: list[tuple[str, str, Callable[[int], Strategy]]] = []
    plans.append(("few-shot CoT, greedy", "1", lambda i: get_strategy("few-shot-cot", k=4, seed=i)))
    for n in (4, 8, 16):
        plans.append(("self-consistency", str(n), lambda i, n=n: get_strategy("self-consistency", samples=n, seed=i)))
        plans.append(("best-of-n", str(n), lambda i, n=n: get_strategy("best-of-n", samples=n, seed=i)))
    for width, expansions, dvts in ((2, 2, False), (4, 4, False), (4, 2, True)):
        label = f"{width}x{expansions}" + (" dvts" if dvts else "")
        plans.append(("beam-search", label, lambda i, w=width, e=expansions, d=dvts: get_strategy(
            "beam-search", width=w, expansions=e, dvts=d, seed=i)))  # fmt: skip
    for method, samples, make in plans:
        add(method, samples, await run_all(backend, problems, make, concurrency))
    for per_prompt in (1, 2, 4):
        solutions = await run_all(
            backend, problems, lambda i, s=per_prompt: get_strategy("diverse", prompts=5, samples=s, seed=i), concurrency
        )
        add("diverse, verifier-weighted", str(5 * per_prompt), solutions)
        add("diverse prompts, plain majority", str(5 * per_prompt), solutions, [majority(s, p) for s, p in zip(solutions, problems)])
    console.print(table)


def majority(solution: Solution, problem: Problem) -> bool:
    """The plain vote on the same samples DIVERSE weighed (ties: the first seen)."""
    votes = Counter(a for a in solution.details.get("answers", []) if a is not None)
    return bool(votes) and is_correct(votes.most_common(1)[0][0], problem.gold)


# -- main ---------------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    pool = load_gsm8k("test")[: args.questions * 2]
    sim = StepSimulator(pool, arith_rate=args.arith_rate, logic_rate=args.logic_rate, seed=args.seed)
    problems = [p for p in pool if sim.usable(p.question)][: args.questions]
    console.print(
        f"{len(problems)} GSM8K test questions; slips per calculation: arithmetic {args.arith_rate}, logic {args.logic_rate}; seed {args.seed}"
    )
    jobs: dict[str, Callable[[], Awaitable[None]]] = {}
    if args.only in (None, "checker"):
        started = time.perf_counter()
        checker(sim, problems, args.traces, args.seed)
        console.print(f"[dim]{time.perf_counter() - started:.1f} s[/]")
    with FakeOpenAIServer(responder=sim.respond, record=False) as server:
        backend = OpenAIBackend(server.base_url, "fake-model", max_in_flight=64)
        try:
            if args.only in (None, "backtrack"):
                jobs["backtrack"] = lambda: backtrack(backend, sim, problems, args.concurrency)
            if args.only in (None, "compute"):
                jobs["compute"] = lambda: compute(backend, problems, args.concurrency)
            for job in jobs.values():
                started = time.perf_counter()
                await job()
                console.print(f"[dim]{time.perf_counter() - started:.1f} s[/]")
        finally:
            await backend.aclose()


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reasoner.bench.measure.verifiers", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=300, help="GSM8K test questions (the first ones the simulator can write)")
    parser.add_argument("--only", choices=["checker", "backtrack", "compute"], help="run one benchmark")
    parser.add_argument("--arith-rate", type=float, default=0.06, help="arithmetic slips per calculation")
    parser.add_argument("--logic-rate", type=float, default=0.03, help="logic slips per calculation")
    parser.add_argument("--traces", type=int, default=4, help="checker benchmark: traces per question")
    parser.add_argument("--concurrency", type=int, default=16, help="questions in flight")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> Any:
    return asyncio.run(main(parse(argv)))


if __name__ == "__main__":
    run()
