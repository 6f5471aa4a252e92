"""Embedded-model speed by thread count, on an idle machine and with the cores kept busy.

    python -m reasoner.bench.measure.threads_under_load [--busy 2] [--tokens 96]

Each measurement loads SmolLM2 in a fresh process with n threads and generates a fixed number of
tokens greedily; `--busy K` first starts K processes that spin on the CPU (as another job on a
shared machine does), so the slow-down a loaded machine causes can be reproduced on demand.
llama.cpp's worker threads meet at a barrier after every layer; when a core is taken by another
process, the thread on it is descheduled and every other thread waits for it at each barrier.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

PROBE = """
import json, sys, time
from llama_cpp import Llama
from reasoner.backends.local import default_gguf
threads, tokens = int(sys.argv[1]), int(sys.argv[2])
llm = Llama(model_path=str(default_gguf()), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
messages = [{"role": "user", "content": "Write a long story about a cat who learns to sail."}]
start = time.perf_counter()
out = llm.create_chat_completion(messages, max_tokens=tokens, temperature=0.0, seed=0)
elapsed = time.perf_counter() - start
print(json.dumps({"tokens": out["usage"]["completion_tokens"], "seconds": elapsed}))
"""


def _spin() -> None:
    while True:
        pass


def measure(threads: int, tokens: int, timeout: float) -> dict[str, float]:
    try:
        out = subprocess.run([sys.executable, "-c", PROBE, str(threads), str(tokens)],
                             capture_output=True, text=True, timeout=timeout, check=True)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"tokens": 0, "seconds": timeout, "timed_out": True}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="spinning processes for the loaded rows")
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a measurement counts as stalled")
    args = parser.parse_args(argv)
    table = Table(title=f"SmolLM2 greedy generation, {args.tokens} tokens, {os.cpu_count()} cores")
    for column in ("load", "threads", "tok/s", "seconds"):
        table.add_column(column, justify="right")
    for busy in (0, args.busy):
        spinners = [mp.Process(target=_spin, daemon=True) for _ in range(busy)]
        for p in spinners:
            p.start()
        time.sleep(1.0 if busy else 0.0)
        try:
            for threads in args.threads:
                r = measure(threads, args.tokens, args.timeout)
                rate = r["tokens"] / r["seconds"] if r["seconds"] else 0.0
                label = f"{busy} spinning" if busy else "no extra"
                table.add_row(label, str(threads), f"{rate:.1f}", f"{r['seconds']:.1f}" + (" (stalled)" if r.get("timed_out") else ""))
        finally:
            for p in spinners:
                p.kill()
    Console().print(table)
    print(f"machine load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
