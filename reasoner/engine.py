"""The async engine that runs a strategy's graph against a model backend.

Every ready node runs at once (the backend bounds its own requests in flight). Sibling model
nodes that became ready together with the same prompt and parameters are merged into one request
with `n`, so the prompt is prefilled once; a backend without `n` gets concurrent requests instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from reasoner.backends.base import Backend
from reasoner.graph import Ctx, Forward, Graph, NodeFailed, NodeId
from reasoner.types import Completion, GenerationRequest, Usage

MAX_N = 128
BACKEND_FEATURES = ("name", "supports_n", "supports_tools", "supports_json_schema")

#: Called as `on_node(event, node_id, attrs)` with event "start", "done" or "failed"; `attrs` are
#: the node's trace attributes. For live displays (the terminal agent); must not block.
NodeListener = Callable[[str, NodeId, dict[str, Any]], None]


class Engine:
    def __init__(self, backend: Backend, *, merge_n: bool = True, on_node: NodeListener | None = None) -> None:
        self.backend = backend
        self.merge_n = merge_n
        self.on_node = on_node

    def _tell(self, graph: Graph, event: str, nodes: list[NodeId]) -> None:
        if self.on_node is None:
            return
        for node in nodes:
            attrs = graph.nx.nodes[node]
            self.on_node(event if event == "start" else attrs["status"], node, attrs)

    async def run(self, graph: Graph) -> Usage:
        """Run until no node can make progress; return what the model calls cost.

        Node failures are recorded in the graph, not raised: the caller reads the nodes it needs.
        Cancelling `run` cancels every request in flight.
        """
        t0 = time.perf_counter()
        # What the backend can do, for nodes that adapt to it at run time (ReAct calls tools
        # natively where it can); strategies never see the backend at build time.
        graph.nx.graph["backend"] = {k: getattr(self.backend, k) for k in BACKEND_FEATURES}
        running: dict[asyncio.Task[None], list[NodeId]] = {}
        try:
            while True:
                self._launch(graph, graph.take_ready(), running, t0)
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._tell(graph, "end", running.pop(task))
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        usage = usage_of(graph)
        usage.latency_s = time.perf_counter() - t0
        return usage

    def _launch(
        self, graph: Graph, ready: list[NodeId], running: dict[asyncio.Task[None], list[NodeId]], t0: float
    ) -> None:
        groups: dict[str, list[tuple[NodeId, GenerationRequest]]] = defaultdict(list)
        self._tell(graph, "start", ready)
        for node in ready:
            attrs = graph.nx.nodes[node]
            attrs["status"] = "running"
            attrs["started_s"] = round(time.perf_counter() - t0, 6)
            if attrs["kind"] != "model":
                task = asyncio.create_task(self._run_function(graph, node, t0))
                running[task] = [node]
                continue
            try:
                request = graph.callback(node)(Ctx(graph, node))
                if not isinstance(request, GenerationRequest):
                    raise TypeError(f"a model node must build a GenerationRequest, got {type(request).__name__}")
            except Exception as exc:  # noqa: BLE001 - recorded on the node, propagated to dependants
                graph.fail(node, _describe(exc))
                self._tell(graph, "end", [node])
                continue
            attrs["request"] = request.model_dump(mode="json", exclude_none=True)
            # Identical siblings are grouped even without `n` support: `_complete` then splits the
            # group into single requests with distinct seeds, so seeded copies still differ.
            key = request.merge_key() if self.merge_n else node
            groups[key].append((node, request))
        for members in groups.values():
            for batch in _batches(members):
                task = asyncio.create_task(self._run_model(graph, batch, t0))
                running[task] = [node for node, _ in batch]

    async def _run_function(self, graph: Graph, node: NodeId, t0: float) -> None:
        start = time.perf_counter()
        try:
            result = graph.callback(node)(Ctx(graph, node))
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            graph.fail(node, "cancelled")
            raise
        except Exception as exc:  # noqa: BLE001
            graph.fail(node, _describe(exc))
            return
        finally:
            graph.nx.nodes[node]["latency_s"] = round(time.perf_counter() - start, 6)
            graph.nx.nodes[node]["ended_s"] = round(time.perf_counter() - t0, 6)
        if isinstance(result, Forward):
            try:
                graph.forward(node, result.target)
            except (KeyError, ValueError) as exc:
                graph.fail(node, str(exc))
        else:
            graph.finish(node, result)

    async def _run_model(self, graph: Graph, batch: list[tuple[NodeId, GenerationRequest]], t0: float) -> None:
        nodes = [node for node, _ in batch]
        total_n = sum(request.n for _, request in batch)
        request = batch[0][1].model_copy(update={"n": total_n})
        try:
            completion = await self._complete(request)
            if len(completion.choices) != total_n:
                raise ValueError(f"asked for {total_n} samples, the backend returned {len(completion.choices)}")
        except asyncio.CancelledError:
            for node in nodes:
                graph.fail(node, "cancelled")
            raise
        except Exception as exc:  # noqa: BLE001
            for node in nodes:
                graph.fail(node, _describe(exc))
                graph.nx.nodes[node]["ended_s"] = round(time.perf_counter() - t0, 6)
            return
        ended = round(time.perf_counter() - t0, 6)
        # The shared prompt is billed once, to the first node; completion tokens follow the choices.
        offset = 0
        for i, (node, req) in enumerate(batch):
            choices = completion.choices[offset : offset + req.n]
            offset += req.n
            tokens = _completion_tokens(completion, choices, total_n, req.n)
            share = Completion(
                choices=choices,
                prompt_tokens=completion.prompt_tokens if i == 0 else 0,
                completion_tokens=tokens,
                latency_s=completion.latency_s,
                model=completion.model,
            )
            attrs = graph.nx.nodes[node]
            attrs.update(
                calls=completion.calls if i == 0 else 0,
                prompt_tokens=share.prompt_tokens,
                completion_tokens=tokens,
                latency_s=round(completion.latency_s, 6),
                ended_s=ended,
            )
            if len(batch) > 1:
                attrs["merged"] = {"with": [n for n in nodes if n != node], "n": total_n}
            graph.finish(node, share)

    async def _complete(self, request: GenerationRequest) -> Completion:
        """One request with `n`, or `n` concurrent requests where the backend cannot sample `n`."""
        if request.n == 1 or self.backend.supports_n:
            completion = await self.backend.generate(request)
            completion.calls = 1
            return completion

        def single(i: int) -> GenerationRequest:
            # Distinct seeds, so a seeded request still yields distinct samples.
            seed = None if request.seed is None else request.seed + i
            return request.model_copy(update={"n": 1, "seed": seed})

        parts = await asyncio.gather(*(self.backend.generate(single(i)) for i in range(request.n)))
        return Completion(
            choices=[c for part in parts for c in part.choices],
            prompt_tokens=sum(p.prompt_tokens for p in parts),
            completion_tokens=sum(p.completion_tokens for p in parts),
            latency_s=max(p.latency_s for p in parts),
            model=parts[0].model,
            calls=len(parts),
        )


def _batches(members: list[tuple[NodeId, GenerationRequest]]) -> list[list[tuple[NodeId, GenerationRequest]]]:
    batches: list[list[tuple[NodeId, GenerationRequest]]] = [[]]
    size = 0
    for node, request in members:
        if batches[-1] and size + request.n > MAX_N:
            batches.append([])
            size = 0
        batches[-1].append((node, request))
        size += request.n
    return batches


def _completion_tokens(completion: Completion, choices: list[Any], total_n: int, n: int) -> int:
    counted = [c.completion_tokens for c in choices]
    if all(t is not None for t in counted):
        return sum(counted)  # type: ignore[arg-type]
    return round(completion.completion_tokens * n / total_n)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NodeFailed):
        return str(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    loc = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{loc}"


def usage_of(graph: Graph) -> Usage:
    usage = Usage()
    for _, attrs in graph.nx.nodes(data=True):
        usage.calls += attrs.get("calls", 0)
        usage.prompt_tokens += attrs.get("prompt_tokens", 0)
        usage.completion_tokens += attrs.get("completion_tokens", 0)
    return usage
