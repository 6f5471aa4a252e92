"""Samples per second on the embedded model: a request's n samples decoded one after another
(llama-cpp-python's loop, `batched=False`) against decoded together in one batch (the default).

    python -m reasoner.bench.measure.batched_sampling [--n 1 2 4 8 16] [--max-tokens 64] [--threads N] [--seeds 3] [--steps]

The prompt is a 2-shot GSM8K chain-of-thought prompt; samples are drawn at temperature 0.7, up to
--max-tokens each (a sample may end earlier, at the end of its turn or at "Q:"). Both paths use
llama.cpp's sampler chain with the same settings, so their samples run to the same lengths on
average; tokens per second is printed beside samples per second because one request's samples
still vary in length. For each n, every mode serves the same --seeds requests (one seed each),
the two modes alternating which goes first, and each mode's times and tokens are summed: the
machine may be shared, and the ratio is only meaningful within one run.

`--steps` adds what bounds the speed-up: llama_decode alone, milliseconds per step of k sequences
(one token each, after the prompt) on the batch context. The last column is a step's cost over k
lone steps': 1.00 would leave decoding nothing to gain from the batch, 0.125 at k = 8 would make it
8x faster.

Target (issue 13): >= 2.5x samples per second at n = 8.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from reasoner.backends.local import LlamaCppBackend
from reasoner.strategies.few_shot_cot import FewShotCoT
from reasoner.types import GenerationRequest

QUESTION = "A baker makes 24 muffins a day and sells them in boxes of 6. How many boxes does he sell in a week?"
TARGET = 2.5
STEP_SIZES = (1, 2, 4, 8, 16)


@dataclass
class Tally:
    seconds: float = 0.0
    samples: int = 0
    tokens: int = 0

    def add(self, seconds: float, samples: int, tokens: int) -> None:
        self.seconds += seconds
        self.samples += samples
        self.tokens += tokens


async def timed(backend: LlamaCppBackend, request: GenerationRequest, tally: Tally) -> None:
    start = time.perf_counter()
    completion = await backend.generate(request)
    tally.add(time.perf_counter() - start, len(completion.choices), completion.completion_tokens)


async def sampling_table(ns: list[int], max_tokens: int, threads: int | None, seeds: int) -> Table:
    batched = LlamaCppBackend(n_threads=threads)
    sequential = LlamaCppBackend(n_threads=threads, batched=False)
    prompt = FewShotCoT(k=2).prompt(QUESTION)
    base = GenerationRequest(prompt=prompt, temperature=0.7, max_tokens=max_tokens, seed=1, stop=("\nQ:",))
    await batched.warm_up()
    await batched.generate(base.model_copy(update={"n": 2}))  # the prompt cached, the batch context made
    await sequential.generate(base)
    table = Table(title=f"embedded SmolLM2, {batched.n_threads} thread(s), up to {max_tokens} tokens a sample, {seeds} requests per n")
    for column in ("n", "sequential samples/s", "batched samples/s", "speed-up", "sequential tok/s", "batched tok/s",
                   "tok/s ratio", "tokens/sample seq | batch", "target"):  # fmt: skip
        table.add_column(column, justify="right")
    for n in ns:
        tallies = {"sequential": Tally(), "batched": Tally()}
        for r in range(seeds):
            request = base.model_copy(update={"n": n, "seed": 1000 * r + 1})
            order = [("sequential", sequential), ("batched", batched)]
            for name, backend in order if r % 2 == 0 else order[::-1]:
                await timed(backend, request, tallies[name])
        s, b = tallies["sequential"], tallies["batched"]
        speedup = (b.samples / b.seconds) / (s.samples / s.seconds)
        target = ""
        if n == 8:
            target = "[green]met[/green]" if speedup >= TARGET else "[red]missed[/red]"
        table.add_row(
            str(n), f"{s.samples / s.seconds:.2f}", f"{b.samples / b.seconds:.2f}", f"{speedup:.2f}x",
            f"{s.tokens / s.seconds:.1f}", f"{b.tokens / b.seconds:.1f}", f"{(b.tokens / b.seconds) / (s.tokens / s.seconds):.2f}x",
            f"{s.tokens / s.samples:.1f} | {b.tokens / b.samples:.1f}", target,
        )  # fmt: skip
    return table


def step_table(threads: int | None, steps: int = 32) -> Table:
    """llama_decode alone on a batch context: ms per step of k sequences, one token each."""
    from reasoner.backends.local_batch import BatchDecoder

    backend = LlamaCppBackend(n_threads=threads)
    llm = backend.llm
    tokens = llm.tokenize(FewShotCoT(k=2).prompt(QUESTION).encode(), add_bos=True, special=True)
    table = Table(title=f"llama_decode per step, {backend.n_threads} thread(s), after a {len(tokens)}-token prompt")
    for column in ("sequences k", "ms per step", "ms per token", "step / (k x step of 1)"):
        table.add_column(column, justify="right")
    cancel = threading.Event()
    decoder = BatchDecoder(llm, backend.n_ctx, backend.n_threads, 64, None)
    times: dict[int, float] = {}
    try:
        decoder._prefill(tokens, cancel)
        for k in STEP_SIZES:
            decoder.fork(k)
            start = time.perf_counter()
            for step in range(steps):
                decoder._decode([(100 + slot, len(tokens) + step, slot, True) for slot in range(k)], cancel)
            times[k] = (time.perf_counter() - start) / steps * 1000
            decoder.release(k, len(tokens))
    finally:
        decoder.close()
    for k, ms in times.items():
        table.add_row(str(k), f"{ms:.1f}", f"{ms / k:.1f}", f"{ms / (k * times[1]):.2f}")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: REASONER_THREADS or half the usable cores)")
    parser.add_argument("--seeds", type=int, default=3, help="requests per n and mode, one seed each (default 3)")
    parser.add_argument("--steps", action="store_true", help="also time llama_decode alone per step of 1..16 sequences")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.n) or args.max_tokens < 1 or args.seeds < 1:
        parser.error("--n, --max-tokens and --seeds must be at least 1")
    start = time.perf_counter()
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(asyncio.run(sampling_table(args.n, args.max_tokens, args.threads, args.seeds)))
    if args.steps:
        console.print(step_table(args.threads))
    console.print(f"[dim]target: >= {TARGET}x samples/s at n = 8; {time.perf_counter() - start:.0f} s[/dim]")


if __name__ == "__main__":
    main()
