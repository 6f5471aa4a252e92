"""Samples per second on the embedded model: a request's n samples decoded one after another
(llama.cpp's sampler, `batched=False`) against decoded together in one batch (the default).

    python -m reasoner.bench.batched_sampling [--n 1 2 4 8 16] [--max-tokens 64] [--threads N] [--repeats 2]

The prompt is a 2-shot GSM8K chain-of-thought prompt; samples are drawn at temperature 0.7 with a
seed, up to --max-tokens each (a sample may end earlier, at the end of its turn or at "Q:", so
tokens per second is printed too). Both modes prefill the prompt once per request and reuse it
from the cache, so the difference is the decoding. For each n the two modes run back to back,
alternating which goes first, --repeats times, and the best time of each counts: the machine may
be shared, and the ratio is only meaningful within one run.

Target (issue 13): >= 2.5x samples per second at n = 8.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from rich.console import Console
from rich.table import Table

from reasoner.backends.local import LlamaCppBackend
from reasoner.strategies.few_shot_cot import FewShotCoT
from reasoner.types import GenerationRequest

QUESTION = "A baker makes 24 muffins a day and sells them in boxes of 6. How many boxes does he sell in a week?"
TARGET = 2.5


async def timed(backend: LlamaCppBackend, request: GenerationRequest) -> tuple[float, int]:
    start = time.perf_counter()
    completion = await backend.generate(request)
    return time.perf_counter() - start, completion.completion_tokens


async def run(ns: list[int], max_tokens: int, threads: int | None, repeats: int) -> Table:
    batched = LlamaCppBackend(n_threads=threads)
    sequential = LlamaCppBackend(n_threads=threads, batched=False)
    prompt = FewShotCoT(k=2).prompt(QUESTION)
    base = GenerationRequest(prompt=prompt, temperature=0.7, max_tokens=max_tokens, seed=1, stop=("\nQ:",))
    await batched.warm_up()
    await batched.generate(base.model_copy(update={"n": 2}))  # the prompt cached, the batch context made
    await sequential.generate(base)
    table = Table(title=f"embedded SmolLM2, {batched.n_threads} thread(s), up to {max_tokens} tokens a sample")
    for column in ("n", "sequential samples/s", "batched samples/s", "speed-up", "sequential tok/s", "batched tok/s", "target"):
        table.add_column(column, justify="right")
    for n in ns:
        request = base.model_copy(update={"n": n})
        best: dict[str, tuple[float, int]] = {}
        for r in range(repeats):
            order = [("sequential", sequential), ("batched", batched)]
            for name, backend in order if r % 2 == 0 else order[::-1]:
                seconds, tokens = await timed(backend, request)
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, tokens)
        (s_time, s_tok), (b_time, b_tok) = best["sequential"], best["batched"]
        speedup = s_time / b_time
        target = ""
        if n == 8:
            target = "[green]met[/green]" if speedup >= TARGET else "[red]missed[/red]"
        table.add_row(
            str(n), f"{n / s_time:.2f}", f"{n / b_time:.2f}", f"{speedup:.2f}x", f"{s_tok / s_time:.1f}", f"{b_tok / b_time:.1f}", target
        )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: REASONER_THREADS or the cores, at most 8)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.n) or args.max_tokens < 1 or args.repeats < 1:
        parser.error("--n, --max-tokens and --repeats must be at least 1")
    start = time.perf_counter()
    table = asyncio.run(run(args.n, args.max_tokens, args.threads, args.repeats))
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    console.print(f"[dim]target: >= {TARGET}x samples/s at n = 8; {time.perf_counter() - start:.0f} s[/dim]")


if __name__ == "__main__":
    main()
