"""How often ReAct's steps name a valid action on a model: the share of Thought → Action steps
whose action parses (a known tool with its input, or finish[answer]), over GSM8K test questions.

    python -m reasoner.bench.measure.react_parse_rate [--limit 20] [--model local] [--mode auto] [--max-steps 8] [--max-tokens 256]

Prints the parse rate, how each question's loop ended, and the accuracy (a tiny model gets most
questions wrong; the parse rate says whether it can use the tools at all).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from reasoner.answers import is_correct
from reasoner.backends.base import Backend
from reasoner.backends.spec import open_backend
from reasoner.data import load_gsm8k
from reasoner.strategies.react import ReAct
from reasoner.types import Solution


class ParseRate(BaseModel):
    questions: int
    steps: int
    parsed: int
    correct: int
    stop_reasons: dict[str, int]
    modes: dict[str, int]

    @property
    def rate(self) -> float:
        return self.parsed / self.steps if self.steps else 0.0


def parse_rate(solutions: Sequence[Solution], golds: Sequence[str]) -> ParseRate:
    """Steps whose action parsed (details["steps"][i]["tool"] is set), over all steps taken."""
    steps: list[dict[str, Any]] = [s for sol in solutions for s in sol.details.get("steps", [])]
    return ParseRate(
        questions=len(solutions),
        steps=len(steps),
        parsed=sum(1 for s in steps if s.get("tool") is not None),
        correct=sum(1 for sol, gold in zip(solutions, golds) if is_correct(sol.answer, gold)),
        stop_reasons=dict(Counter(sol.details.get("stop_reason", "error") for sol in solutions)),
        modes=dict(Counter(sol.details.get("mode", "?") for sol in solutions)),
    )


async def measure(backend: Backend, strategy: ReAct, limit: int, data: str | None = None) -> ParseRate:
    problems = load_gsm8k("test", data)[:limit]
    # One at a time: the embedded model computes one request at a time anyway, and the order of
    # its calls then does not depend on scheduling.
    solutions = [await strategy.solve(p.question, backend) for p in problems]
    return parse_rate(solutions, [p.gold for p in problems])


def show(result: ParseRate, label: str, console: Console) -> None:
    table = Table(title=f"ReAct actions that parse: {label}")
    for column in ("questions", "steps", "parsed", "parse rate", "correct", "loop ended by", "mode"):
        table.add_column(column)
    ended = ", ".join(f"{k} ({v})" for k, v in sorted(result.stop_reasons.items()))
    modes = ", ".join(f"{k} ({v})" for k, v in sorted(result.modes.items()))
    table.add_row(
        str(result.questions), str(result.steps), str(result.parsed), f"{result.rate:.1%}",
        f"{result.correct}/{result.questions}", ended, modes,
    )
    console.print(table)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="GSM8K test questions (the first N)")
    parser.add_argument("--model", default="local", help="model spec (default: the embedded SmolLM2)")
    parser.add_argument("--mode", default="auto", help="ReAct's mode (auto, text, native, json)")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens per step")
    parser.add_argument("--data", default=None, help="folder holding GSM8K's test.jsonl")
    args = parser.parse_args(argv)
    backend = await open_backend(args.model)
    try:
        result = await measure(backend, ReAct(mode=args.mode, max_steps=args.max_steps, max_tokens=args.max_tokens), args.limit, args.data)
    finally:
        await backend.aclose()
    show(result, f"{args.model}, mode={args.mode}, max_steps={args.max_steps}, max_tokens={args.max_tokens}", Console(width=160))


if __name__ == "__main__":
    asyncio.run(main())
