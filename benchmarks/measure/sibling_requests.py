"""How many requests each strategy that samples siblings sends, counted on the simulated server.

Every strategy whose siblings share a prompt (self-consistency's samples, best-of-n's, a beam's
expansions, a tree's candidates, backtracking's resampled step) should send them as one request
with `n`. This runs each on the step-level simulated model (`reasoner.simulators.steps`) behind the
simulated OpenAI-compatible server, seeded, and prints the requests the server received, the
samples they asked for (the sum of `n`) and the answers, per strategy. The same script run on the
code before and after a change to the engine must print the same table (tests/strategies/test_sibling_merging.py
holds the one measured before the direct-style port).

    python -m reasoner.bench.measure.sibling_requests [--questions 6]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from rich.console import Console
from rich.table import Table

from reasoner.backends.http import OpenAIBackend
from reasoner.data import load_gsm8k
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.simulators.steps import StepSimulator

#: (label, strategy, options): the strategies whose siblings share a prompt, seeded.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("self-consistency@8", "self-consistency", {"samples": 8}),
    ("self-consistency dirichlet", "self-consistency", {"samples": 16, "stopping": "dirichlet"}),
    ("self-consistency verifier-weighted", "self-consistency", {"samples": 6, "weighting": "verifier"}),
    ("best-of-n@6", "best-of-n", {"samples": 6}),
    ("diverse 3x2", "diverse", {"prompts": 3, "samples": 2}),
    ("beam-search 2x3", "beam-search", {"width": 2, "expansions": 3, "depth": 6}),
    ("beam-search dvts 3x2", "beam-search", {"width": 3, "expansions": 2, "depth": 6, "dvts": True}),
    ("tree-of-thought", "tree-of-thought", {"breadth": 2, "depth": 3, "candidates": 3}),
    ("backtrack", "backtrack", {"retries": 4, "max_backtracks": 2}),
    # Written after the port, in direct style from the start: no "before" to compare with.
    ("mcts", "mcts", {"iterations": 6, "children": 3}),
    ("particle-filter 4", "particle-filter", {"particles": 4}),
    ("aggregate 4", "aggregate", {"candidates": 4}),
    ("mixture self 3", "mixture", {"samples": 3}),
    ("self-consistency of flowchart", "self-consistency", {"samples": 4, "inner": "flowchart", "temperature": 0.7}),
]


async def count(server: FakeOpenAIServer, questions: list[str], strategy: str, options: dict[str, Any]) -> tuple[int, int, list[str | None]]:
    """(requests, samples asked for, answers) of `strategy` on `questions`, one question at a time."""
    backend = OpenAIBackend(server.base_url, "fake-model", max_in_flight=64)
    chosen = get_strategy(strategy, seed=0, **options)
    server.reset()
    answers = []
    try:
        for question in questions:
            answers.append((await chosen.solve(question, backend)).answer)
    finally:
        await backend.aclose()
    asked = server.completion_requests()
    return len(asked), sum(int((r.body or {}).get("n") or 1) for r in asked), answers


def measure(n_questions: int = 6, seed: int = 0) -> dict[str, tuple[int, int, list[str | None]]]:
    pool = load_gsm8k("test")[: n_questions * 3]
    sim = StepSimulator(pool, arith_rate=0.15, logic_rate=0.08, seed=seed)
    questions = [p.question for p in pool if sim.usable(p.question)][:n_questions]

    async def run_all() -> dict[str, tuple[int, int, list[str | None]]]:
        with FakeOpenAIServer(responder=sim.respond) as server:
            return {label: await count(server, questions, name, options) for label, name, options in CASES}

    return asyncio.run(run_all())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0, help="the simulated model's seed")
    args = parser.parse_args()
    table = Table(title=f"requests on the simulated server, {args.questions} questions")
    for column in ("strategy", "requests", "samples (sum of n)", "answers"):
        table.add_column(column)
    for label, (requests, samples, answers) in measure(args.questions, args.seed).items():
        table.add_row(label, str(requests), str(samples), " ".join(str(a) for a in answers))
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
