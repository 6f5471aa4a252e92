"""Flowchart reasoning on the chart-writing simulated model: accuracy, fallback rate and cost, beside
PAL, plan-dag and few-shot CoT, through the real runner (`reasoner bench gsm8k`) over HTTP.

The simulated model (`reasoner.simulators.charts.ChartSimulator`) writes charts from GSM8K's
annotations, wrong at the rates given here (a flipped branch condition, an off-by-one loop, a
malformed chart), reads sub-questions with slips, and answers everything else (the chain-of-thought
fallback, PAL's and plan-dag's prompts) as the step simulator does. The runner's own report table
(accuracy, calls and tokens per question, fallback rate) is printed, then the same figures for
`flowchart` with every chart right, which says what the wrong charts cost.

    python -m reasoner.bench.measure.flowchart --questions 40
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasoner.data import load_gsm8k
from reasoner.simulators.charts import ChartSimulator
from reasoner.testing.fake_openai import FakeOpenAIServer

STRATEGIES = ("flowchart", "flowchart:form=program", "pal", "plan-dag", "few-shot-cot")


def bench(url: str, data: Path, out: Path, strategies: Sequence[str], concurrency: int) -> dict[str, Any]:
    """One `reasoner bench gsm8k` run against the simulated server; its summary."""
    argv = [sys.executable, "-c", "import sys; from reasoner.cli.main import main; sys.exit(main(sys.argv[1:]))", "bench", "gsm8k", "--data", str(data), "--model", url, "--out", str(out),
            "-c", str(concurrency), "--seed", "0", *(a for s in strategies for a in ("-s", s))]
    subprocess.run(argv, check=True)
    return json.loads((out / "summary.json").read_text())


def row(label: str, figures: dict[str, Any]) -> str:
    return (f"| {label} | {figures['accuracy']:.1%} | {figures['fallback_rate'] or 0:.1%} | {figures['calls_per_question']:.1f} | "
            f"{figures['prompt_tokens_per_question'] + figures['completion_tokens_per_question']:,.0f} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reasoner.bench.measure.flowchart", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=40, help="GSM8K test questions the simulator can chart")
    parser.add_argument("--wrong-branch-rate", type=float, default=0.1)
    parser.add_argument("--off-by-one-rate", type=float, default=0.1)
    parser.add_argument("--malformed-rate", type=float, default=0.15)
    parser.add_argument("--ask-slip-rate", type=float, default=0.02)
    parser.add_argument("--arith-rate", type=float, default=0.1, help="the step simulator's slips (CoT, PAL, plan-dag)")
    parser.add_argument("--logic-rate", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    pool = load_gsm8k("test")[: args.questions * 3]
    rates = {"wrong_branch_rate": args.wrong_branch_rate, "off_by_one_rate": args.off_by_one_rate,
             "malformed_rate": args.malformed_rate, "ask_slip_rate": args.ask_slip_rate}
    sim = ChartSimulator(pool, **rates, arith_rate=args.arith_rate, logic_rate=args.logic_rate)
    problems = [p for p in pool if sim.usable(p.question) and sim.steps.usable(p.question)][: args.questions]
    clean = ChartSimulator(problems, ask_slip_rate=args.ask_slip_rate, wrong_branch_rate=0, off_by_one_rate=0, malformed_rate=0,
                           arith_rate=args.arith_rate, logic_rate=args.logic_rate)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "questions.jsonl"
        data.write_text("".join(json.dumps({"id": p.id, "question": p.question, "answer": p.answer_field}) + "\n" for p in problems))
        with FakeOpenAIServer(responder=sim.respond, record=False) as server:
            summary = bench(server.base_url, data, Path(tmp) / "run", STRATEGIES, args.concurrency)
        with FakeOpenAIServer(responder=clean.respond, record=False) as server:
            right = bench(server.base_url, data, Path(tmp) / "clean", STRATEGIES[:2], args.concurrency)
    print(f"\n{len(problems)} GSM8K test questions; chart errors per chart: {rates}; step slips arith {args.arith_rate}, logic {args.logic_rate}\n")
    print("| strategy | accuracy | fallback rate | calls / q | tokens / q |\n|---|---|---|---|---|")
    for label, figures in summary["strategies"].items():
        print(row(label, figures))
    for label, figures in right["strategies"].items():
        print(row(f"{label} (every chart right)", figures))


if __name__ == "__main__":
    main()
