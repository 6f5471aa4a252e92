"""Reasoning models through the whole stack: the simulated model (`reasoner.simulators.samples`)
thinking before it answers (`reasoner.simulators.thinking`), behind the fake OpenAI server acting
as a vLLM with a reasoning parser. For each strategy and thinking budget it prints accuracy,
completion and thinking tokens per question (the server's counts), and how often the answer scored
is the first guess a thought names (a decoy, never the reply's answer). The last column scores
what a client that glued the thinking onto the text would have answered for the first sample.

    python -m reasoner.bench.measure.reasoning [--questions 200]

The simulated thinking does not change the reply, so a budget saves tokens here without costing
accuracy; what a smaller budget does to a real reasoning model's accuracy this cannot say.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

from rich.console import Console
from rich.table import Table

from reasoner.answers import extract_answer
from reasoner.backends.http import OpenAIBackend
from reasoner.numbers import is_correct
from reasoner.simulators.samples import QUESTION_ID, SimulatedModel
from reasoner.simulators.thinking import Thinker
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.types import Solution

SIM = SimulatedModel(seed=0)
STRATEGIES = {"few-shot-cot": {}, "self-consistency:samples=5": {"samples": 5, "temperature": 0.7}}
BUDGETS: list[int | None] = [None, 8]
GUESS = re.compile(r"First guess: the answer is (-?\d+)")  # the decoy a thought names


def respond(body: dict[str, Any], index: int) -> str:
    messages = body.get("messages") or []
    text = "\n".join(str(m.get("content") or "") for m in messages) or str(body.get("prompt"))
    return SIM.sample(int(QUESTION_ID.findall(text)[-1]), (body.get("seed") or 0) + index).text


def _first_choices(solution: Solution) -> list[dict[str, Any]]:
    return [c for n in solution.trace["nodes"] if n["kind"] == "model" for c in n["output"]["choices"]]


async def measure(url: str, name: str, options: dict[str, Any], budget: int | None, questions: int) -> dict[str, float]:
    strategy = get_strategy(name.split(":")[0], seed=0, max_tokens=400, max_reasoning_tokens=budget, **options)
    async with OpenAIBackend(url, "fake-model", reasoning_controls=("budget",)) as backend:
        solutions = await asyncio.gather(*(strategy.solve(SIM.question_text(q), backend) for q in range(questions)))
    right = decoys = merged_right = 0
    for q, solution in enumerate(solutions):
        gold = str(SIM.gold(q))
        right += is_correct(solution.answer, gold)
        choices = _first_choices(solution)
        guesses = {m.group(1) for c in choices if (m := GUESS.search(c.get("reasoning") or ""))}
        decoys += solution.answer in guesses
        # What a client reading thinking + text as one text would score for the first sample.
        first = choices[0]
        merged_right += is_correct(extract_answer(first.get("reasoning", "") + "\n" + first["text"]), gold)
    usage = [s.usage for s in solutions]
    return {
        "accuracy": right / questions,
        "completion": sum(u.completion_tokens for u in usage) / questions,
        "thinking": sum(u.reasoning_tokens for u in usage) / questions,
        "decoys": decoys,
        "merged": merged_right / questions,
    }


async def main_async(questions: int) -> None:
    console = Console(width=150)
    for closed in (True, False):
        thinker = Thinker(respond, think_words=40, closed=closed)
        with FakeOpenAIServer(responder=thinker.respond, reasoning_field="reasoning_content", record=False) as server:
            table = Table(title=f"{questions} simulated questions, thoughts {'closed' if closed else 'cut off (never closed)'}")
            for column in ("strategy", "thinking budget", "accuracy", "completion tok/q", "of which thinking", "answer = thought's guess",
                           "1st sample, thinking glued to text: accuracy"):
                table.add_column(column, no_wrap=column == "strategy")
            for name, options in STRATEGIES.items():
                for budget in BUDGETS:
                    row = await measure(server.base_url, name, options, budget, questions)
                    table.add_row(name, "none" if budget is None else str(budget), f"{row['accuracy']:.3f}",
                                  f"{row['completion']:.1f}", f"{row['thinking']:.1f}", str(row["decoys"]), f"{row['merged']:.3f}")
            console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasoner.bench.measure.reasoning", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.questions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
