"""How much the graph engine costs on top of the HTTP calls it makes.

1000 model calls, 64 in flight, against a local OpenAI-compatible fake server (a separate process,
so its CPU is not counted) with a fixed latency per request, driven two ways:
  * bare:   an httpx asyncio loop with a semaphore, parsing each JSON body, its connections
            spread over small pools as the backend does (and, for reference, one big pool);
  * engine: 1000 independent model nodes in one reasoner Graph, run by the Engine through the
            OpenAIBackend (pydantic request/response models, retries, trace recording);
  * strategy: the same 1000 calls made as a strategy makes them, `run.gather` of `run.generate`
            in one `forward` (the direct-style handle: a task and a node per call).
Prints both wall times, their ratio, and client CPU per call (process time / calls); and, to
separate the engine's own cost from httpx's, the engine against an in-memory backend.

    python benchmarks/measure/overhead.py [--calls 1000] [--concurrency 64] [--latency 0.05] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import httpx
from rich.console import Console
from rich.table import Table

from reasoner.backends.http import OpenAIBackend
from reasoner.backends.transports import CONNECTIONS_PER_CLIENT
from reasoner.testing.scripted import ScriptedBackend
from reasoner.engine import Engine
from reasoner.graph import Graph
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer, GenerationRequest


class Calls(Strategy):
    """`calls` distinct model calls at once, as a strategy's siblings are made."""

    name = "calls"
    summary = "for the overhead benchmark"
    calls: int = 1000

    async def forward(self, run: Run, question: str) -> Answer:
        prompts = [GenerationRequest(prompt=f"question {i}", max_tokens=16) for i in range(self.calls)]
        replies = await run.gather(*(run.generate(p, label="call") for p in prompts))
        return Answer(answer=str(len(replies)), text="")


async def bare_loop(base_url: str, calls: int, concurrency: int, per_client: int) -> None:
    clients = [
        httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=per_client), timeout=60)
        for _ in range(-(-concurrency // per_client))
    ]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with gate:
            body = {"model": "fake-model", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 16}
            response = await clients[i % len(clients)].post("/chat/completions", json=body)
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"]

    try:
        await asyncio.gather(*(one(i) for i in range(calls)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def bare_one_client(base_url: str, calls: int, concurrency: int) -> None:
    await bare_loop(base_url, calls, concurrency, per_client=concurrency)


async def bare(base_url: str, calls: int, concurrency: int) -> None:
    # httpcore's pool does work quadratic in its connection count per request, so a fast client
    # spreads connections over several small pools; the OpenAIBackend does the same.
    await bare_loop(base_url, calls, concurrency, per_client=CONNECTIONS_PER_CLIENT)


async def engine(base_url: str, calls: int, concurrency: int) -> None:
    backend = OpenAIBackend(base_url, "fake-model", api_key="unused", max_in_flight=concurrency)
    try:
        graph = Graph()
        for i in range(calls):
            graph.generate(GenerationRequest(prompt=f"question {i}", max_tokens=16), label="call")
        usage = await Engine(backend).run(graph)
        failed = [n for n in graph.nodes() if n.status != "done"]
        if failed or usage.calls != calls:
            raise RuntimeError(f"{len(failed)} calls failed; first: {failed[0].error if failed else None}")
    finally:
        await backend.aclose()


async def engine_alone(base_url: str, calls: int, concurrency: int) -> None:
    """The engine's own cost: the same graph against a backend that answers at once, in memory."""
    backend = ScriptedBackend([("question", "Echo")], max_in_flight=concurrency, supports_n=False)
    graph = Graph()
    for i in range(calls):
        graph.generate(GenerationRequest(prompt=f"question {i}", max_tokens=16), label="call")
    await Engine(backend).run(graph)


async def strategy(base_url: str, calls: int, concurrency: int) -> None:
    backend = OpenAIBackend(base_url, "fake-model", api_key="unused", max_in_flight=concurrency)
    try:
        solution = await Calls(calls=calls).solve("", backend)
        if solution.error or solution.usage.calls != calls:
            raise RuntimeError(f"the strategy failed: {solution.error}")
    finally:
        await backend.aclose()


async def strategy_alone(base_url: str, calls: int, concurrency: int) -> None:
    backend = ScriptedBackend([("question", "Echo")], max_in_flight=concurrency, supports_n=False)
    solution = await Calls(calls=calls).solve("", backend)
    if solution.error:
        raise RuntimeError(f"the strategy failed: {solution.error}")


def measure(fn, base_url: str, calls: int, concurrency: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(fn(base_url, calls, concurrency))
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05, help="server latency per request, seconds")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "reasoner.testing.fake_openai", "--port", "0", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()  # type: ignore[union-attr]
        if not base_url.startswith("http"):
            raise SystemExit(f"the fake server did not start (said {base_url!r})")
        measure(bare, base_url, 50, args.concurrency)  # warm up connections and imports
        results = {}
        paths = (
            ("bare httpx, one client", bare_one_client),
            ("bare httpx", bare),
            ("engine", engine),
            ("engine alone, no network", engine_alone),
            ("strategy (run.gather)", strategy),
            ("strategy alone, no network", strategy_alone),
        )
        for name, fn in paths:
            # Interleaving would be fairer on a noisy machine, but best-of-N per path is simpler to read.
            runs = [measure(fn, base_url, args.calls, args.concurrency) for _ in range(args.repeat)]
            results[name] = min(runs)
    finally:
        server.terminate()
        server.wait()

    ideal = args.calls / args.concurrency * args.latency
    table = Table(title=f"{args.calls} calls, {args.concurrency} in flight, {args.latency * 1000:.0f} ms server latency")
    for col in ("path", "wall s", "client CPU s", "CPU ms / call"):
        table.add_column(col, justify="right")
    for name, (wall, cpu) in results.items():
        table.add_row(name, f"{wall:.3f}", f"{cpu:.3f}", f"{cpu / args.calls * 1000:.3f}")
    console = Console()
    console.print(table)
    (bw, bc), (ew, ec) = results["bare httpx"], results["engine"]
    alone = results["engine alone, no network"][1]
    handle = results["strategy alone, no network"][1]
    console.print(f"latency floor (calls / in flight × latency): {ideal:.3f} s")
    console.print(f"wall ratio engine / bare: [bold]{ew / bw:.3f}[/bold]  (target ≤ 1.05)")
    console.print(
        f"engine CPU per call: [bold]{ec / args.calls * 1000:.3f} ms[/bold] in all (httpx included), "
        f"{(ec - bc) / args.calls * 1000:+.3f} ms against bare httpx, "
        f"[bold]{alone / args.calls * 1000:.3f} ms[/bold] for the engine alone  (target < 0.5 ms)"
    )
    console.print(
        f"a strategy's call through the run handle: [bold]{handle / args.calls * 1000:.3f} ms[/bold] of CPU alone, "
        f"{(handle - alone) / args.calls * 1000:+.3f} ms against a bare graph node"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
