"""Self-consistency and its adaptive stopping rules on a simulated model, over real HTTP.

    python benchmarks/self_consistency.py [--questions 500] [--seed 0]

The simulated model is served by `reasoner.testing.fake_openai` on 127.0.0.1 and called through the real
`OpenAIBackend`, so requests, `n`-merging and parsing are the production path. Each question has a
gold number; each sample is right with probability p, else one of three wrong values with shares
50% / 30% / 20% of the remaining mass (a skewed error distribution: for p=0.3 the commonest wrong
value, at 35%, is likelier than the truth, so voting makes things worse there, as it would for a
real model that is systematically misled).

A sample is a deterministic function of (question, sample number), and the sample number is the
request's seed plus the choice index. Every method gets the same seed, so all methods see the same
stream of samples for a question: single = sample 0, SC@16 = samples 0..15, an adaptive rule =
samples 0..m-1. Differences between methods are then only what stopping early costs, not noise.

Target (issue 3): an adaptive rule draws >= 60% fewer samples than SC@16 and loses <= 0.5 points.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


from reasoner.answers import is_correct  # noqa: E402
from reasoner.backends.http import OpenAIBackend  # noqa: E402
from reasoner.testing.fake_openai import FakeOpenAIServer  # noqa: E402
from reasoner.strategy import Strategy, get_strategy  # noqa: E402

WRONG_SHARES = (0.5, 0.3, 0.2)
QUESTION_ID = re.compile(r"Question #(\d+)")
CAP = 16
SAVING_TARGET = 0.60  # fraction of SC@16's samples an adaptive rule must save
ACCURACY_TOLERANCE = 0.5  # points an adaptive rule may lose against SC@16


@dataclass(frozen=True)
class SimulatedModel:
    p: float
    seed: int

    def gold(self, question: int) -> int:
        return random.Random(f"gold:{self.seed}:{question}").randint(20, 999)

    def sample(self, question: int, number: int) -> int:
        gold = self.gold(question)
        rng = random.Random(f"sample:{self.seed}:{question}:{number}")
        if rng.random() < self.p:
            return gold
        return rng.choices([gold + 1, 2 * gold, gold - 10], weights=WRONG_SHARES)[0]

    def respond(self, body: dict[str, Any], index: int) -> str:
        prompt = " ".join(str(m.get("content") or "") for m in body.get("messages") or [])
        question = int(QUESTION_ID.findall(prompt)[-1])  # the few-shot exemplars come first
        number = int(body.get("seed") or 0) + index
        return f"Let me work through it step by step.\nThe answer is {self.sample(question, number)}."


def methods(seed: int) -> dict[str, Strategy]:
    def sc(**options: Any) -> Strategy:
        return get_strategy("self-consistency", samples=CAP, seed=seed, **options)

    return {
        "single sample": get_strategy("few-shot-cot", temperature=0.7, seed=seed),
        f"SC@{CAP}": sc(),
        "beta, window 4": sc(stopping="beta"),
        "esc, window 4": sc(stopping="esc"),
        # The papers' own granularity: Aggarwal et al. test after every sample, Li et al. use w=5.
        "beta, window 1 (paper)": sc(stopping="beta", window=1),
        "esc, window 5 (paper)": sc(stopping="esc", window=5),
    }


@dataclass
class Result:
    correct: list[bool]
    samples: list[int]
    calls: int
    seconds: float

    @property
    def accuracy(self) -> float:
        return 100 * sum(self.correct) / len(self.correct)

    @property
    def mean_samples(self) -> float:
        return sum(self.samples) / len(self.samples)


async def evaluate(strategy: Strategy, backend: OpenAIBackend, model: SimulatedModel, questions: int) -> Result:
    slots = asyncio.Semaphore(64)

    async def one(q: int) -> tuple[bool, int, int]:
        async with slots:
            solution = await strategy.solve(f"Question #{q}: what number is the simulated model asked for?", backend)
        if solution.error:
            raise RuntimeError(f"question {q}: {solution.error}")
        drawn = solution.details.get("samples_drawn", 1)
        return is_correct(solution.answer, str(model.gold(q))), drawn, solution.usage.calls

    start = time.perf_counter()
    rows = await asyncio.gather(*(one(q) for q in range(questions)))
    return Result([r[0] for r in rows], [r[1] for r in rows], sum(r[2] for r in rows), time.perf_counter() - start)


async def run(questions: int, seed: int, ps: list[float]) -> Table:
    table = Table(title=f"self-consistency on a simulated model ({questions} questions per p, cap {CAP})")
    for column in ("p", "method", "accuracy %", "mean samples", "requests/q", "Δ acc vs SC", "samples saved", "target"):
        table.add_column(column, justify="left" if column in ("method", "target") else "right")
    for p in ps:
        model = SimulatedModel(p, seed)
        with FakeOpenAIServer("simulated", responder=model.respond, record=False) as server:
            backend = OpenAIBackend(server.base_url, "simulated", max_in_flight=64)
            try:
                results = {name: await evaluate(s, backend, model, questions) for name, s in methods(seed).items()}
            finally:
                await backend.aclose()
        full = results[f"SC@{CAP}"]
        for name, r in results.items():
            delta = r.accuracy - full.accuracy
            saved = 1 - r.mean_samples / full.mean_samples
            target = ""
            if name.startswith(("beta", "esc")):
                misses = [why for why, ok in (("samples", saved >= SAVING_TARGET), ("accuracy", delta >= -ACCURACY_TOLERANCE)) if not ok]
                target = "[green]met[/green]" if not misses else f"[red]missed ({', '.join(misses)})[/red]"
            table.add_row(
                f"{p:.1f}", name, f"{r.accuracy:.1f}", f"{r.mean_samples:.2f}", f"{r.calls / questions:.2f}",
                f"{delta:+.1f}", f"{100 * saved:.0f}%", target,
            )
        table.add_section()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p", type=float, nargs="+", default=[0.3, 0.5, 0.7], help="per-sample accuracy of the model")
    args = parser.parse_args()
    start = time.perf_counter()
    table = asyncio.run(run(args.questions, args.seed, args.p))
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    console.print(
        f"[dim]wrong answers: 3 values with shares {WRONG_SHARES} of 1-p; target: >= {SAVING_TARGET:.0%} fewer samples "
        f"than SC@{CAP} at <= {ACCURACY_TOLERANCE} points lost; {time.perf_counter() - start:.0f} s[/dim]"
    )


if __name__ == "__main__":
    main()
