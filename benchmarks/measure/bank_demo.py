"""Record once, compare many: SC@16 on the simulated model over HTTP, then four variants replayed
from its bank, then the curves and the results explorer (the README's pictures).

    python -m reasoner.bench.measure.bank_demo --out runs/bank-demo [--questions 200]

The simulated model (`reasoner.simulators.samples`) answers behind the fake OpenAI server, so
every request crosses a real socket and the server's own counter says how many were made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from reasoner.bank import BankMode
from reasoner.bench.curves import write_curves
from reasoner.bench.explorer import write_explorer
from reasoner.bench.gsm8k import BenchConfig, run_gsm8k
from reasoner.bench.report import results_table
from reasoner.strategy import Strategy, get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.simulators.samples import QUESTION_ID, SimulatedModel
from reasoner.variants import parse_variant

VARIANTS = [
    "self-consistency:samples=16", "self-consistency:samples=8", "self-consistency:samples=16,stopping=beta",
    "self-consistency:samples=16,stopping=esc", "self-consistency:samples=1",
]


def responder(model: SimulatedModel) -> Any:
    def respond(body: dict[str, Any], index: int) -> str:
        messages = body.get("messages")
        text = "\n".join(str(m.get("content") or "") for m in messages) if messages else str(body["prompt"])
        return model.sample(int(QUESTION_ID.findall(text)[-1]), (body.get("seed") or 0) + index).text

    return respond


def variants(specs: list[str]) -> dict[str, Strategy]:
    return {spec: get_strategy(name, seed=0, **options) for spec, (name, options) in ((s, parse_variant(s)) for s in specs)}


def run(out: Path, questions: int) -> int:
    sim = SimulatedModel(seed=0)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    data = out / "sim.jsonl"
    data.write_text("".join(
        json.dumps({"id": f"q{q}", "question": sim.question_text(q), "answer": str(sim.gold(q))}) + "\n" for q in range(questions)
    ))
    console = Console()
    with FakeOpenAIServer("fake-model", responder=responder(sim)) as server:
        def bench(name: str, specs: list[str], mode: BankMode) -> None:
            config = BenchConfig(variants(specs), out=out / name, model=server.base_url, data=data, concurrency=32,
                                 bank=out / "sim.bank", bank_mode=mode)
            started = time.monotonic()
            result = asyncio.run(run_gsm8k(config, console=console))
            console.print(results_table(result.report.summary))
            console.print(f"{name}: {len(server.completion_requests())} requests reached the server in "
                          f"{time.monotonic() - started:.0f} s; {result.notes[-1]}", highlight=False, markup=False)
            server.requests.clear()

        bench("sc16", VARIANTS[:1], "record")
        bench("variants", VARIANTS, "replay")
    curves = write_curves(out / "variants")
    page = write_explorer(out / "variants")
    console.print(", ".join(str(f) for f in [*curves.files, page]), highlight=False, markup=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bank-demo", help="folder for the data, the bank and both runs")
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args(argv)
    return run(Path(args.out), args.questions)


if __name__ == "__main__":
    sys.exit(main())
