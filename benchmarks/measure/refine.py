"""Refine, aggregate and mixture of agents against few-shot CoT and self-consistency, at their token cost.

    python -m reasoner.bench.measure.refine [--questions 50] [--critique 0.8] [--revise 0.8] [--merge 0.9]

The model is the step simulator (`reasoner.simulators.steps`: GSM8K gold solutions written step by
step, each calculation an arithmetic slip with probability --arith, a wrong setup with --logic)
taught to critique, revise and merge by `reasoner.simulators.critique` with the skills given (a
critique right with probability --critique, a reviser that takes located feedback with --revise,
a merger that copies the majority's candidate with --merge, else a random one). It is served over
HTTP by the fake OpenAI server and every strategy runs through the real engine and HTTP backend;
tokens are the server's whitespace tokens, prompt and completion, per question. Mixture's other
models are two more simulated servers of the same strength with their own slips (own seeds).

Every method sees the same questions with the same seeds. "SC at same tokens" is self-consistency's
accuracy interpolated (linearly, between its measured budgets, greedy few-shot CoT the cheapest) at
the method's tokens per question: the cheap baseline a method has to beat ("-" past self-consistency's
largest budget, where it has already levelled off). With 50 questions one question is 2 points.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from reasoner.answers import is_correct
from reasoner.backends.http import OpenAIBackend
from reasoner.data import Problem, load_gsm8k
from reasoner.simulators.critique import CritiqueSimulator
from reasoner.simulators.steps import StepSimulator
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer

SC_BUDGETS = (3, 5, 8, 12)
K = 8  # exemplars everywhere, as few-shot-cot and self-consistency use by default


def methods(others: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, strategy, options) of every method measured; `others` are mixture's other models."""
    mixed = ";".join(["self", *others])
    return [
        ("few-shot-cot", "few-shot-cot", {}),
        *((f"self-consistency k={k}", "self-consistency", {"samples": k}) for k in SC_BUDGETS),
        ("refine critique, 1 round", "refine", {"rounds": 1, "k": K}),
        ("refine critique, 2 rounds", "refine", {"rounds": 2, "k": K}),
        ("refine critique, 3 rounds", "refine", {"rounds": 3, "k": K}),
        ("refine arith verifier, 2 rounds", "refine", {"rounds": 2, "verifier": "arith", "k": K}),
        ("aggregate k=3", "aggregate", {"candidates": 3, "k": K}),
        ("aggregate k=5", "aggregate", {"candidates": 5, "k": K}),
        ("aggregate k=5, 3 merges, arith", "aggregate", {"candidates": 5, "merges": 3, "verifier": "arith", "k": K}),
        ("mixture 1 model x 3 samples", "mixture", {"samples": 3, "k": K}),
        ("mixture 1 model x 5 samples", "mixture", {"samples": 5, "k": K}),
        ("mixture 3 models x 1 sample", "mixture", {"models": mixed, "samples": 1, "k": K}),
        ("mixture 3 models x 2 samples", "mixture", {"models": mixed, "samples": 2, "k": K}),
        ("mixture 1 model x 3, 2 layers", "mixture", {"samples": 3, "layers": 2, "k": K}),
    ]


async def measure(url: str, problems: list[Problem], strategy: str, options: dict[str, Any]) -> tuple[float, float, float]:
    """Accuracy (%), tokens and completion tokens per question."""
    backend = OpenAIBackend(url, "fake-model")
    right = tokens = completion = 0
    try:
        for i, p in enumerate(problems):
            temperature = {} if strategy != "few-shot-cot" else {"temperature": 0.0}
            solution = await get_strategy(strategy, seed=i, **temperature, **options).solve(p.question, backend)
            if solution.error:
                raise RuntimeError(f"{strategy} {options} failed on {p.id}: {solution.error}")
            right += is_correct(solution.answer, p.gold)
            tokens += solution.usage.total_tokens
            completion += solution.usage.completion_tokens
    finally:
        await backend.aclose()
    n = len(problems)
    return 100 * right / n, tokens / n, completion / n


def at_tokens(curve: list[tuple[float, float]], tokens: float) -> float | None:
    """Self-consistency's accuracy at `tokens`, linear between measured budgets (None outside them)."""
    for (t0, a0), (t1, a1) in zip(curve, curve[1:]):
        if t0 <= tokens <= t1:
            return a0 + (a1 - a0) * (tokens - t0) / (t1 - t0)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--arith", type=float, default=0.08, help="arithmetic slip rate per calculation")
    parser.add_argument("--logic", type=float, default=0.04, help="setup slip rate per calculation")
    parser.add_argument("--critique", type=float, default=0.8, help="probability a critique is right")
    parser.add_argument("--revise", type=float, default=0.8, help="probability a revision takes the feedback")
    parser.add_argument("--merge", type=float, default=0.9, help="probability a merge copies the majority's candidate")
    parser.add_argument("--seed", type=int, default=0, help="the simulated model's seed")
    args = parser.parse_args(argv)

    pool = load_gsm8k("test")[: args.questions * 3]

    def served(seed: int) -> FakeOpenAIServer:
        sim = StepSimulator(pool, arith_rate=args.arith, logic_rate=args.logic, seed=seed)
        critic = CritiqueSimulator(sim, critique_accuracy=args.critique, revise_rate=args.revise, merge_accuracy=args.merge, seed=seed)
        return FakeOpenAIServer(responder=critic.respond, record=False)

    check = StepSimulator(pool)
    problems = [p for p in pool if check.usable(p.question)][: args.questions]
    with served(args.seed) as main_server, served(args.seed + 101) as second, served(args.seed + 202) as third:
        rows = [(label, *asyncio.run(measure(main_server.base_url, problems, name, options)))
                for label, name, options in methods([second.base_url, third.base_url])]  # fmt: skip
    # The baselines' curve: greedy few-shot CoT as its one-sample point, then self-consistency's budgets.
    curve = sorted((tokens, acc) for label, acc, tokens, _ in rows if label.startswith(("self-consistency", "few-shot-cot")))
    table = Table(title=f"{len(problems)} GSM8K questions, simulated model (arith {args.arith}, logic {args.logic}; "
                  f"critique {args.critique}, revise {args.revise}, merge {args.merge})")  # fmt: skip
    for column in ("method", "accuracy %", "tokens / question", "completion tokens / question", "SC at same tokens %"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for label, acc, tokens, completion in rows:
        sc = at_tokens(curve, tokens)
        table.add_row(label, f"{acc:.0f}", f"{tokens:.0f}", f"{completion:.0f}", "-" if sc is None else f"{sc:.0f}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
