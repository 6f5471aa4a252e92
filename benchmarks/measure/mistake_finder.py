"""The mistake-finder (`classifier`): training time, load and scoring speed, and how well it locates
the first mistake on held-out step-simulator traces, by kind of slip.

    python -m reasoner.bench.measure.mistake_finder [--train] [--model PATH] [--questions 300]

Without --train it measures the model given (default: the shipped one); with --train it first
trains one from the shipped GSM8K train split with `reasoner verifier train`'s defaults and
times that. The traces are the step simulator's own, on GSM8K *test* questions (never trained
on), with arithmetic and logic slips; a logic slip is split into a wrong operand (a number off)
and a wrong operation (the numbers right, the operation swapped), which no calculator sees.
Chance is a location drawn uniformly from "no mistake" and each step; `arith` is the calculator.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from reasoner.data import load_gsm8k
from reasoner.simulators.steps import StepSimulator
from reasoner.tools.arith_check import check_steps
from reasoner.verifiers.classifier import MistakeFinder, load_model
from reasoner.verifiers.mistakes import Trace
from reasoner.verifiers.training import TrainConfig, simulated_traces, train_from_gsm8k

console = Console(width=150)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def slip_of(sim: StepSimulator, t: Trace) -> str:
    """clean, arith, or for a logic slip: operand (its numbers differ from the right ones) or operation."""
    if t.kind is None or t.first_mistake is None:
        return "clean"
    if t.kind == "arith":
        return "arith"
    problem, i = sim.problems[t.question], t.first_mistake
    if i >= len(problem.steps) or not problem.steps[i].calcs:
        return "logic: answer line"
    current = sim.stated_values(problem, t.steps[:i])
    right = problem.expected(len(current), problem.steps[i].calcs[0][0], current)
    stated = problem.steps[i].stated(t.steps[i])
    said = stated[0][0] if stated else ""
    return "logic: wrong operand" if sorted(_NUMBER.findall(said)) != sorted(_NUMBER.findall(right)) else "logic: wrong operation"


def measure(model: MistakeFinder, questions: int, arith_rate: float, logic_rate: float, seed: int) -> None:
    problems = load_gsm8k("test")[:questions]
    traces = simulated_traces(problems, per_problem=4, arith_rate=arith_rate, logic_rate=logic_rate, seed=seed)
    sim = StepSimulator(problems)
    totals: Counter[str] = Counter()
    found: Counter[str] = Counter()
    chance: Counter[str] = Counter()
    arith: Counter[str] = Counter()
    started = time.perf_counter()
    predicted = [model.first_mistake(t.question, t.steps) for t in traces]
    per_trace = (time.perf_counter() - started) / max(len(traces), 1)
    for t, said in zip(traces, predicted):
        for group in {"all traces", "logic (all)" if t.kind == "logic" else "", slip_of(sim, t)} - {""}:
            totals[group] += 1
            found[group] += said == t.first_mistake
            chance[group] += 1 / (len(t.steps) + 1)
            arith[group] += check_steps(t.steps).first_error == t.first_mistake
    table = Table(title=f"First mistake located, {len(traces)} simulator traces of {questions} GSM8K test questions "
                        f"(slips per calculation: arithmetic {arith_rate}, logic {logic_rate})")  # fmt: skip
    for column in ("first slip", "traces", "classifier", "chance", "arith"):
        table.add_column(column, justify="left" if column == "first slip" else "right")
    order = ["all traces", "clean", "arith", "logic (all)", "logic: wrong operand", "logic: wrong operation", "logic: answer line"]
    for group in [g for g in order if totals[g]]:
        n = totals[group]
        table.add_row(group, str(n), f"{100 * found[group] / n:.1f}%", f"{100 * chance[group] / n:.1f}%", f"{100 * arith[group] / n:.1f}%")
    console.print(table)
    console.print(f"scoring: {1000 * per_trace:.2f} ms a trace ({len(model.weights)} weights)", highlight=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reasoner.bench.measure.mistake_finder", description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="train one first (the command's defaults) and time it")
    parser.add_argument("--model", help="a model file (default: the shipped one)")
    parser.add_argument("--questions", type=int, default=300, help="GSM8K test questions to write traces for (4 each)")
    parser.add_argument("--arith-rate", type=float, default=0.06)
    parser.add_argument("--logic-rate", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.train:
        started = time.perf_counter()
        result = train_from_gsm8k(TrainConfig(simulated_questions=0))
        model = result.model
        console.print(f"trained in {time.perf_counter() - started:.1f} s on {model.trained['traces']} traces "
                      f"({model.trained['labelled_steps']} steps)", highlight=False)  # fmt: skip
    else:
        started = time.perf_counter()
        model = load_model(args.model)
        console.print(f"loaded {args.model or 'the shipped model'} in {1000 * (time.perf_counter() - started):.0f} ms", highlight=False)
    measure(model, args.questions, args.arith_rate, args.logic_rate, args.seed)


if __name__ == "__main__":
    main()
