"""The async engine that runs a strategy's graph against a model backend.

Every ready node runs at once (the backend bounds its own requests in flight). Sibling model
nodes that became ready together with the same prompt and parameters are merged into one request
with `n`, so the prompt is prefilled once; a backend without `n` gets concurrent requests instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from reasoner.backends.base import Backend
from reasoner.graph import Capabilities, Ctx, Graph, NodeFailed, NodeId, reason
from reasoner.types import Completion, GenerationRequest, Usage

MAX_N = 128

#: Called as `on_node(event, node_id, attrs)` with event "start", "done" or "failed"; `attrs` are
#: the node's trace record (`Node.trace()`). For live displays (the terminal agent); must not block.
NodeListener = Callable[[str, NodeId, dict[str, Any]], None]


def capabilities(backend: Backend) -> Capabilities:
    """What `backend` can do, as the nodes it runs see it (`ctx.backend`)."""
    return Capabilities(
        name=backend.name,
        supports_n=backend.supports_n,
        supports_tools=backend.supports_tools,
        supports_json_schema=backend.supports_json_schema,
        supports_streaming=backend.supports_streaming,
        logprobs=backend.logprobs,
        context_window=backend.context_window,
        reasoning_controls=tuple(sorted(backend.reasoning_controls)),
    )


class Engine:
    def __init__(self, backend: Backend, *, merge_n: bool = True, on_node: NodeListener | None = None) -> None:
        self.backend = backend
        self.merge_n = merge_n
        self.on_node = on_node
        self._caps = Capabilities()

    def _tell(self, graph: Graph, event: str, nodes: list[NodeId]) -> None:
        if self.on_node is None:
            return
        for node in nodes:
            record = graph.node(node)
            self.on_node(event if event == "start" else record.status, node, record.trace())

    def _ctx(self, graph: Graph, node: NodeId) -> Ctx:
        return Ctx(graph, node, self._caps, self.backend)

    async def run(self, graph: Graph) -> Usage:
        """Run until no node can make progress; return what the model calls cost.

        Node failures are recorded in the graph, not raised: the caller reads the nodes it needs.
        Cancelling `run` cancels every request in flight.
        """
        t0 = time.perf_counter()
        # Read per run: an HTTP backend learns what its server can do from its first replies.
        self._caps = capabilities(self.backend)
        graph.meta["backend"] = self._caps.model_dump()
        running: dict[asyncio.Task[None], list[NodeId]] = {}
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()

        def ready() -> None:  # a running node added a step it waits for (`Ctx.wait`)
            if not wake.done():
                wake.set_result(None)

        def abandon(node: NodeId) -> None:  # cancel a task once none of its nodes is wanted
            for task, nodes in running.items():
                if node in nodes:
                    abandoned.add(node)
                    if abandoned.issuperset(nodes):
                        task.cancel()
                    return

        abandoned: set[NodeId] = set()
        graph.on_ready, graph.on_abandon = ready, abandon
        try:
            while True:
                await _settle(graph)
                self._launch(graph, graph.take_ready(), running, t0)
                if not running:
                    break
                done, _ = await asyncio.wait([*running, wake], return_when=asyncio.FIRST_COMPLETED)
                if wake.done():
                    wake = loop.create_future()
                for task in done:
                    if task in running:
                        self._tell(graph, "end", running.pop(task))  # type: ignore[arg-type]
        finally:
            graph.on_ready = graph.on_abandon = None
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        usage = graph.usage()
        usage.latency_s = time.perf_counter() - t0
        return usage

    def _launch(
        self, graph: Graph, ready: list[NodeId], running: dict[asyncio.Task[None], list[NodeId]], t0: float
    ) -> None:
        groups: dict[str, list[tuple[NodeId, GenerationRequest]]] = defaultdict(list)
        ready = [node for node in ready if graph.status(node) == "pending"]  # not abandoned before it could start
        self._tell(graph, "start", ready)
        for node in ready:
            record = graph.start(node, round(time.perf_counter() - t0, 6))
            if record.kind != "model":
                task = asyncio.create_task(self._run_function(graph, node, t0))
                running[task] = [node]
                continue
            try:
                request = graph.callback(node)(self._ctx(graph, node))
                if not isinstance(request, GenerationRequest):
                    raise TypeError(f"a model node must build a GenerationRequest, got {type(request).__name__}")
            except Exception as exc:  # noqa: BLE001 - recorded on the node, propagated to dependants
                graph.fail(node, _describe(exc), exception=exc)
                self._tell(graph, "end", [node])
                continue
            record.request = request.model_dump(mode="json", exclude_none=True)
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
            result = graph.callback(node)(self._ctx(graph, node))
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            graph.fail(node, "cancelled")
            raise
        except NodeFailed as exc:  # a step it waited for failed: that step is the cause
            graph.fail(node, str(exc), upstream=exc.node)
            return
        except Exception as exc:  # noqa: BLE001
            graph.fail(node, _describe(exc), exception=exc)
            return
        finally:
            record = graph.node(node)
            record.latency_s = round(time.perf_counter() - start, 6)
            record.ended_s = round(time.perf_counter() - t0, 6)
        graph.finish(node, result)

    async def _run_model(self, graph: Graph, batch: list[tuple[NodeId, GenerationRequest]], t0: float) -> None:
        total_n = sum(request.n for _, request in batch)
        request = batch[0][1].model_copy(update={"n": total_n})
        try:
            parts = await self._complete(request)
        except asyncio.CancelledError:
            for node, _ in batch:
                graph.fail(node, "cancelled")
            raise
        # One entry per sample: (its part, the choice) or the error that part ended with. A request
        # with n fails as a whole; split-up requests fail one sample at a time.
        samples: list[tuple[Completion, Any] | BaseException] = []
        for asked, part in parts:
            if isinstance(part, BaseException):
                samples.extend([part] * asked)
            elif len(part.choices) != asked:
                samples.extend([ValueError(f"asked for {asked} samples, the backend returned {len(part.choices)}")] * asked)
            else:
                samples.extend((part, choice) for choice in part.choices)
        ended = round(time.perf_counter() - t0, 6)
        billed: set[int] = set()
        offset = 0
        for node, req in batch:
            mine = samples[offset : offset + req.n]
            offset += req.n
            record = graph.node(node)
            record.ended_s = ended
            if len(batch) > 1:
                record.merged = {"with": [n for n, _ in batch if n != node], "n": total_n}
            errors = [s for s in mine if isinstance(s, BaseException)]
            if errors:
                graph.fail(node, _describe(errors[0]), exception=errors[0])
                continue
            # Each request's prompt is billed once, to the first node holding one of its samples.
            own_parts = {id(p): p for p, _ in mine}  # type: ignore[misc]
            new = [p for key, p in own_parts.items() if key not in billed]
            billed.update(own_parts)
            choices = [c for _, c in mine]  # type: ignore[misc]
            tokens = sum(_choice_tokens(p, c) for p, c in mine)  # type: ignore[misc]
            latency = max(p.latency_s for p in own_parts.values())
            share = Completion(
                choices=choices,
                prompt_tokens=sum(p.prompt_tokens for p in new),
                completion_tokens=tokens,
                latency_s=latency,
                model=next(iter(own_parts.values())).model,
                calls=len(new),
            )
            record.calls, record.prompt_tokens, record.completion_tokens = share.calls, share.prompt_tokens, tokens
            record.reasoning_tokens = share.reasoning_tokens or None
            record.latency_s = round(latency, 6)
            graph.finish(node, share)

    async def _complete(self, request: GenerationRequest) -> list[tuple[int, Completion | BaseException]]:
        """One request with `n`, or `n` concurrent single requests where the backend cannot sample
        `n`; each result, with the samples it was asked for, is a completion or its error."""
        if request.n > 1 and request.temperature == 0:
            return [(request.n, await self._greedy(request))]
        if request.n == 1 or self.backend.supports_n:
            requests = [request]
        else:
            requests = request.singles()
        results = await asyncio.gather(*(self.backend.generate(r) for r in requests), return_exceptions=True)
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                raise result
        return [(r.n, result) for r, result in zip(requests, results)]


    async def _greedy(self, request: GenerationRequest) -> Completion | BaseException:
        """Identical greedy requests give one answer, so it is generated once and shared (vLLM also
        refuses `n > 1` without sampling). The copies cost nothing: the tokens are billed once."""
        try:
            one = await self.backend.generate(request.model_copy(update={"n": 1}))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every node of the group fails with it
            return exc
        first = one.choices[0]
        # A choice without its own count shares the request's evenly, which the copies then split.
        free = {k: 0 for k in ("completion_tokens", "reasoning_tokens") if getattr(first, k) is not None}
        copy = first.model_copy(update=free) if free else first
        return one.model_copy(update={"choices": [first, *[copy] * (request.n - 1)]})


async def _settle(graph: Graph, quiet_ticks: int = 2) -> None:
    """Let the coroutines that the last results woke add their next calls before any is launched:
    siblings that go on together (the samples of one `run.gather`) then reach `_launch` together,
    and identical requests among them merge into one with `n`. A coroutine may need a tick or two
    to reach its call (it awaits an inner strategy's node), so this waits until `quiet_ticks`
    ticks in a row add nothing."""
    quiet, count = 0, graph.ready_count()
    while quiet < quiet_ticks:
        await asyncio.sleep(0)
        now = graph.ready_count()
        quiet = quiet + 1 if now == count else 0
        count = now


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


def _choice_tokens(part: Completion, choice: Any) -> int:
    """A sample's completion tokens: its own count, else an even share of its request's."""
    if choice.completion_tokens is not None:
        return int(choice.completion_tokens)
    return round(part.completion_tokens / max(1, len(part.choices)))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NodeFailed):
        return str(exc)
    return reason(exc)
