"""DeepConf (confidence-filtered voting, traces cut while generated) on the simulated model.

    python -m reasoner.bench.measure.deepconf [--questions 1319] [--caps 16 40] [--seeds 0 1 2]

One table per simulation seed, then a summary of online DeepConf over the seeds. Online DeepConf
runs as users reach it: the `deepconf` strategy (`reasoner solve --strategy deepconf`), its one
streaming node, and the usage it reports.

The simulated model is `reasoner.simulators.samples`, in memory: per-question accuracy
p ~ Beta(0.6, 0.4); wrong answers 50/30/20 over three values; a sample is 120-280 tokens whose
log-probabilities are -Exp(mean 0.3), except a 48-token low-confidence stretch (-Exp(mean 2.0)) at
a uniform position in 40% of right samples and 70% of wrong ones. With 32-token groups a trace's
confidence (lowest group) is about -0.4 without a stretch and about -2 with one (measured: median
-0.43 for right samples, -2.03 for wrong; 37% of right and 71% of wrong samples below -1), so the
separation is "how often", not "how low".

Online DeepConf streams every trace after the warm-up (`SimulatedBackend._stream`, 16 tokens a
chunk) and leaves the stream when its group confidence drops below the threshold; generated
tokens count what each trace had streamed when it was cut or cancelled. SC@cap and offline
DeepConf draw cap whole traces (one request with n = cap).

Target (issue 13): >= 50% fewer generated tokens than SC@cap at <= 0.5 points lost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from reasoner.answers import extract_answer, is_correct
from reasoner.strategies.confidence import DeepConfSettings, Trace, offline_filter, trace_confidence, weighted_vote
from reasoner.strategy import get_strategy
from reasoner.simulators.samples import STRETCH_SHARE, STRETCH_TOKENS, SimulatedBackend, SimulatedModel
from reasoner.types import GenerationRequest
from reasoner.bench.stats import target_cell

TOKEN_SAVING = 0.50
ACCURACY_TOLERANCE = 0.5
SETTINGS = DeepConfSettings(warmup=4, keep=90, window=32, parallel=2, settle=0.85)


@dataclass
class Row:
    correct: int = 0
    tokens: int = 0
    traces: int = 0
    cut: int = 0
    requests: int = 0
    prompt_tokens: int = 0


def request_for(model: SimulatedModel, q: int, seed: int) -> GenerationRequest:
    return GenerationRequest(prompt=model.question_text(q), temperature=0.7, seed=seed, logprobs=True, max_tokens=512)


async def full_traces(backend: SimulatedBackend, q: int, cap: int, seed: int, window: int) -> tuple[list[Trace], int]:
    completion = await backend.generate(request_for(backend.model, q, seed).model_copy(update={"n": cap}))
    traces = [
        Trace(extract_answer(c.text), trace_confidence(c.token_logprobs or [], window), c.completion_tokens or 0)
        for c in completion.choices
    ]
    return traces, completion.prompt_tokens


Figures = dict[int, tuple[float, float]]  # cap -> online DeepConf's (Δ accuracy points, tokens saved)


async def run(questions: int, caps: list[int], seed: int) -> tuple[Table, Figures]:
    backend = SimulatedBackend(SimulatedModel(seed))
    model = backend.model
    figures: Figures = {}
    table = Table(title=f"DeepConf on the simulated model ({questions} questions, seed {seed})")
    for column in ("cap", "method", "accuracy %", "Δ acc", "gen tokens/q", "saved", "traces/q", "cut/q", "requests/q", "target"):
        table.add_column(column, justify="left" if column in ("method", "target") else "right")
    for cap in caps:
        settings = SETTINGS.model_copy(update={"samples": cap})
        strategy = get_strategy("deepconf", **settings.model_dump(), seed=seed, max_tokens=512)
        rows = {name: Row() for name in (f"SC@{cap}", "offline, top 90%", "offline, top 10%", "online DeepConf")}
        for q in range(questions):
            gold = str(model.gold(q))
            traces, prompt_tokens = await full_traces(backend, q, cap, seed, settings.window)
            votes = Counter(t.answer for t in traces if t.answer is not None)
            picks = {
                f"SC@{cap}": votes.most_common(1)[0][0] if votes else None,
                "offline, top 90%": weighted_vote(offline_filter(traces, 0.9))[0],
                "offline, top 10%": weighted_vote(offline_filter(traces, 0.1))[0],
            }
            for name, pick in picks.items():
                row = rows[name]
                row.correct += is_correct(pick, gold)
                row.tokens += sum(t.tokens for t in traces)
                row.traces += cap
                row.requests += 1
                row.prompt_tokens += prompt_tokens
            online = await strategy.solve(model.question_text(q), backend)
            if online.error:
                raise RuntimeError(f"question {q}: {online.error}")
            row = rows["online DeepConf"]
            row.correct += is_correct(online.answer, gold)
            row.tokens += online.details["generated_tokens"]
            row.traces += online.details["samples_drawn"]
            row.cut += sum(t["cut"] for t in online.details["traces"][settings.warmup :])
            row.requests += online.usage.calls
            row.prompt_tokens += online.usage.prompt_tokens
        full = rows[f"SC@{cap}"]
        for name, row in rows.items():
            acc = 100 * row.correct / questions
            delta = acc - 100 * full.correct / questions
            saved = 1 - row.tokens / full.tokens
            target = ""
            if name.startswith("online"):
                target = target_cell(saved, TOKEN_SAVING, delta, ACCURACY_TOLERANCE, what="tokens")
                figures[cap] = (delta, saved)
            table.add_row(
                str(cap), name, f"{acc:.2f}", f"{delta:+.2f}", f"{row.tokens / questions:.0f}", f"{100 * saved:.1f}%",
                f"{row.traces / questions:.2f}", f"{row.cut / questions:.2f}", f"{row.requests / questions:.2f}", target,
            )
        table.add_section()
    return table, figures


def summary(per_seed: dict[int, Figures]) -> Table:
    seeds = list(per_seed)
    table = Table(title=f"online DeepConf over seeds {', '.join(map(str, seeds))}, against SC@cap")
    for column in ("cap", "Δ acc per seed", "mean Δ", "tokens saved per seed", "mean saved", "target at every seed"):
        table.add_column(column, justify="left" if column.startswith("target") else "right")
    for cap in per_seed[seeds[0]]:
        deltas = [per_seed[s][cap][0] for s in seeds]
        saved = [per_seed[s][cap][1] for s in seeds]
        met = all(d >= -ACCURACY_TOLERANCE for d in deltas) and all(v >= TOKEN_SAVING for v in saved)
        table.add_row(
            str(cap), " / ".join(f"{d:+.2f}" for d in deltas), f"{sum(deltas) / len(deltas):+.2f}",
            " / ".join(f"{100 * v:.1f}%" for v in saved), f"{100 * sum(saved) / len(saved):.1f}%",
            "[green]met[/green]" if met else "[red]missed[/red]",
        )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=1319)
    parser.add_argument("--caps", type=int, nargs="+", default=[16, 40])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="simulation seeds (each its own model)")
    args = parser.parse_args(argv)
    if args.questions < 1 or any(c <= SETTINGS.warmup for c in args.caps):
        parser.error(f"--questions must be at least 1 and every cap above the warm-up ({SETTINGS.warmup})")
    start = time.perf_counter()
    console = Console(width=None if sys.stdout.isatty() else 150)
    per_seed: dict[int, Figures] = {}
    for seed in dict.fromkeys(args.seeds):
        table, per_seed[seed] = asyncio.run(run(args.questions, args.caps, seed))
        console.print(table)
    console.print(summary(per_seed))
    console.print(
        f"[dim]low-confidence stretch of {STRETCH_TOKENS} tokens in {STRETCH_SHARE[True]:.0%} of right and "
        f"{STRETCH_SHARE[False]:.0%} of wrong samples; online: {SETTINGS.model_dump()}; target: >= {TOKEN_SAVING:.0%} "
        f"fewer generated tokens than SC@cap at <= {ACCURACY_TOLERANCE} points lost; {time.perf_counter() - start:.0f} s[/dim]"
    )


if __name__ == "__main__":
    main()
