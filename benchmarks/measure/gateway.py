"""What `reasoner serve` costs, and how it holds a strategy's load on the upstream.

Passthrough overhead: 2,000 chat requests from 64 concurrent clients against the simulated
OpenAI server with a fixed latency, straight to it and through the gateway (the server and the
gateway each in a process of their own); the wall-time ratio is the gateway's overhead (target
at most 1.05).

Self-consistency@8: 64 concurrent clients each ask `self-consistency:samples=8/MODEL` through a
gateway whose upstream backend may have `--bound` requests in flight; the simulated server (here on
a thread, so its in-flight count can be sampled) reports the most and the mean requests in flight
while the load runs, and the requests and `n` it received per question.

    python -m reasoner.bench.measure.gateway [--requests 2000] [--clients 64] [--latency 0.1] [--bound 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from reasoner.testing.fake_openai import FakeOpenAIServer

MODEL = "fake-model"
# As the HTTP backend does: several small pools, since httpcore's pool costs grow with its size.
PER_CLIENT = 4


@dataclass
class Child:
    url: str
    pid: int

    def cpu_s(self) -> float:
        """User and system CPU seconds the process has used (Linux; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def process(args: list[str], marker: str) -> Iterator[Child]:
    """A child process whose output line holding `marker` holds its base URL."""
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if marker in line:
                url = next(word for word in line.split() if word.startswith("http://"))
                break
        else:
            raise RuntimeError(f"{' '.join(args)} exited before it served")
        yield Child(url, child.pid)
    finally:
        child.terminate()
        child.wait(10)


def fake_server(latency: float) -> AbstractContextManager[Child]:
    return process([sys.executable, "-m", "reasoner.testing.fake_openai", "--port", "0", "--latency", str(latency)], "http://")


def gateway(upstream: str, *extra: str) -> AbstractContextManager[Child]:
    command = [sys.executable, "-m", "reasoner.cli.main", "serve", "--model", upstream, "--port", "0", *extra]
    return process(command, "reasoner serve:")


async def load(base_url: str, model: str, requests: int, clients: int, max_tokens: int = 16) -> float:
    """Wall seconds for `requests` chat requests, `clients` at a time; every one must succeed."""
    pools = [httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=PER_CLIENT), timeout=120)
             for _ in range(-(-clients // PER_CLIENT))]  # fmt: skip
    gate = asyncio.Semaphore(clients)

    async def one(i: int) -> None:
        async with gate:
            body = {"model": model, "messages": [{"role": "user", "content": f"What is {i} plus {i}?"}], "max_tokens": max_tokens}
            response = await pools[i % len(pools)].post("/chat/completions", json=body)
            response.raise_for_status()
            response.json()["choices"][0]["message"]["content"]

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(i) for i in range(requests)))
    finally:
        await asyncio.gather(*(p.aclose() for p in pools))
    return time.perf_counter() - started


def passthrough(requests: int, clients: int, latency: float, repeat: int) -> dict[str, float]:
    with fake_server(latency) as upstream, gateway(upstream.url, "--max-in-flight", str(clients)) as front:
        asyncio.run(load(upstream.url, MODEL, clients, clients))  # warm both up: connections, imports
        asyncio.run(load(front.url, MODEL, clients, clients))
        direct, through = [], []
        cpu = front.cpu_s()
        for _ in range(repeat):  # interleaved, so drift in the machine's load hits both alike
            direct.append(asyncio.run(load(upstream.url, MODEL, requests, clients)))
            through.append(asyncio.run(load(front.url, MODEL, requests, clients)))
        cpu = front.cpu_s() - cpu
    return {"direct_s": min(direct), "gateway_s": min(through), "ratio": min(through) / min(direct),
            "ideal_s": -(-requests // clients) * latency, "gateway_cpu_ms": 1000 * cpu / (repeat * requests)}  # fmt: skip


def self_consistency(questions: int, clients: int, latency: float, bound: int) -> dict[str, float]:
    with FakeOpenAIServer(MODEL, latency_s=latency) as upstream:
        with gateway(upstream.base_url, "--max-in-flight", str(bound), "--max-runs", str(clients)) as front:
            asyncio.run(load(front.url, f"self-consistency:samples=8/{MODEL}", 1, 1))
            upstream.reset()
            samples: list[int] = []
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    samples.append(upstream.in_flight)
                    time.sleep(0.002)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            cpu = front.cpu_s()
            wall = asyncio.run(load(front.url, f"self-consistency:samples=8/{MODEL}", questions, clients, max_tokens=64))
            cpu = front.cpu_s() - cpu
            done.set()
            sampler.join()
        sent = upstream.completion_requests()
    return {
        "questions": questions, "bound": bound, "wall_s": wall, "peak_in_flight": upstream.peak_in_flight,
        "mean_in_flight": statistics.fmean(samples), "requests_per_question": len(sent) / questions,
        "n_per_request": statistics.fmean(r.body.get("n", 1) for r in sent), "gateway_cpu_ms": 1000 * cpu / questions,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasoner.bench.measure.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5, help="the simulated server's seconds per request")
    parser.add_argument("--bound", type=int, default=16, help="the gateway's upstream in-flight bound for self-consistency")
    parser.add_argument("--questions", type=int, default=256, help="self-consistency questions")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console()
    pt = passthrough(args.requests, args.clients, args.latency, args.repeat)
    table = Table(title=f"passthrough: {args.requests} requests, {args.clients} clients, {args.latency:g} s latency (best of {args.repeat})")
    for column in ("straight to the server", "through the gateway", "ratio (target ≤ 1.05)", "ideal", "gateway CPU / request"):
        table.add_column(column, justify="right")
    table.add_row(f"{pt['direct_s']:.2f} s", f"{pt['gateway_s']:.2f} s", f"{pt['ratio']:.3f}", f"{pt['ideal_s']:.2f} s",
                  f"{pt['gateway_cpu_ms']:.2f} ms")  # fmt: skip
    console.print(table)
    sc = self_consistency(args.questions, args.clients, args.latency, args.bound)
    table = Table(title=f"self-consistency@8: {args.questions} questions, {args.clients} clients, upstream bound {args.bound}")
    for column in ("wall", "max in flight", "mean in flight", "requests / question", "n / request", "gateway CPU / question"):
        table.add_column(column, justify="right")
    table.add_row(f"{sc['wall_s']:.2f} s", str(sc["peak_in_flight"]), f"{sc['mean_in_flight']:.1f}",
                  f"{sc['requests_per_question']:.2f}", f"{sc['n_per_request']:.1f}", f"{sc['gateway_cpu_ms']:.1f} ms")  # fmt: skip
    console.print(table)
    # The figures depend on the CPU left over: say what the machine was doing.
    console.print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
