"""What one trivial sandbox run costs: `python -m reasoner.bench.measure.sandbox_latency [RUNS]`.

Cold: no runner started ahead (each run starts Deno and restores the snapshot while we wait).
Warm: a runner was started ahead, as the pool does between runs. CPU is the runners' own user +
system time, which a loaded machine inflates far less than wall time; the load is printed too.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time

from rich.console import Console

from reasoner.tools import run_python, sandbox_runtime


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed_run() -> float:
    start = time.perf_counter()
    result = run_python("6 * 7")
    if not (result.ok and result.value == 42):
        raise SystemExit(f"the sandbox failed: {result.output}")
    return time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    console = Console()
    sandbox_runtime.installation()
    pool = sandbox_runtime.pool
    pool.size = 0
    before = _children_cpu()
    cold = [_timed_run() for _ in range(runs)]
    cpu = (_children_cpu() - before) / runs
    pool.size = 1
    _timed_run()  # fills the pool
    warm = []
    for _ in range(runs):
        time.sleep(3)  # the replacement runner starts meanwhile, as between a model's programs
        warm.append(_timed_run())
    pool.close()
    console.print(f"cold: median {statistics.median(cold):.3f} s, {cpu:.2f} CPU-s per run")
    console.print(f"warm: median {statistics.median(warm):.3f} s")
    console.print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, {runs} runs each")


if __name__ == "__main__":
    main()
