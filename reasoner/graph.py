"""A strategy's graph of steps: model calls, tool calls and pure functions, joined by data dependencies.

Strategies build a `Graph`; the `Engine` (reasoner.engine) runs it. A node's callback receives a
`Ctx` that reads its predecessors' outputs and can add nodes to the graph, so searches and loops
grow the graph while it runs. The executed graph, with what every node did, is the trace.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict

from reasoner.types import GenerationRequest, Usage

if TYPE_CHECKING:
    from reasoner.backends.base import Backend

NodeId = str
Kind = Literal["model", "tool", "function"]
Status = Literal["pending", "running", "done", "failed"]
Callback = Callable[["Ctx"], Any | Awaitable[Any]]


class Capabilities(BaseModel):
    """What the backend running a graph can do, for nodes that adapt to it at run time (ReAct
    calls tools natively where it can). Strategies never see the backend at build time."""

    model_config = ConfigDict(frozen=True)

    name: str = "unknown"
    supports_n: bool = False
    supports_tools: bool = False
    supports_json_schema: bool = False
    supports_streaming: bool = False
    logprobs: bool = False  # whether requests asking for token log-probabilities get them
    context_window: int | None = None  # tokens, where the backend knows it
    reasoning_controls: tuple[str, ...] = ()  # thinking-budget controls honoured ("budget", "effort")


@dataclass(slots=True)
class Node:
    """One step of a graph and what it did: its record in the trace."""

    id: NodeId
    kind: Kind
    label: str
    order: int
    status: Status = "pending"
    tolerant: bool = False  # runs after failed dependencies too
    request: dict[str, Any] | None = None  # model nodes: the request sent, as JSON
    output: Any = None  # a JSON-safe summary of the output, once done
    error: str | None = None
    #: The exception the step failed with (its type and traceback); the trace keeps its text.
    exception: BaseException | None = None
    upstream: NodeId | None = None  # the failed dependency this node failed because of
    merged: dict[str, Any] | None = None  # model nodes served by one request with others
    calls: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None  # of completion_tokens, those a reasoning model spent thinking
    started_s: float | None = None  # seconds since the run began
    ended_s: float | None = None
    latency_s: float | None = None

    def usage(self) -> Usage:
        return Usage(
            calls=self.calls or 0, prompt_tokens=self.prompt_tokens or 0, completion_tokens=self.completion_tokens or 0,
            reasoning_tokens=self.reasoning_tokens or 0,
        )

    def trace(self) -> dict[str, Any]:
        """The record as trace JSON: the fields that are set (`tolerant` only when true)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("id", "exception")}
        return {k: v for k, v in out.items() if v is not None and (k != "tolerant" or v)}


class Ctx(Mapping[NodeId, Any]):
    """What a node's callback sees: its predecessors' outputs, by node id, the graph to grow, and
    what the backend can do."""

    def __init__(self, graph: Graph, node: NodeId, backend: Capabilities | None = None, model: Backend | None = None) -> None:
        self.graph = graph
        self.node = node
        self.backend = backend or Capabilities()
        self.model = model  # the engine's backend itself, for `Run.online`

    def __getitem__(self, key: NodeId) -> Any:
        if key not in self.graph.nx.pred[self.node]:
            raise KeyError(f"node {self.node!r} reads {key!r}, which is not one of its dependencies")
        return self.graph.output(key)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.graph.nx.pred[self.node])

    def __len__(self) -> int:
        return len(self.graph.nx.pred[self.node])

    def ok(self, key: NodeId) -> bool:
        """Whether a dependency succeeded (a tolerant node also runs after failed ones)."""
        return self.graph.status(key) == "done"

    def error(self, key: NodeId) -> str | None:
        return self.graph.node(key).error


class NodeFailed(Exception):
    """A node's own error, or the error of a node it depends on; `exception` is the exception
    where the failure began, where one was raised (a `BackendError`, say)."""

    def __init__(self, node: NodeId, error: str, exception: BaseException | None = None) -> None:
        super().__init__(f"node {node!r} failed: {error}")
        self.node = node
        self.error = error
        self.exception = exception


def reason(exc: BaseException) -> str:
    """What went wrong, for a message: a failed step's cause as it was recorded, or the exception
    named with where it was raised ("ValueError: … (at pal.py:42)")."""
    if isinstance(exc, NodeFailed):
        return exc.error
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    loc = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{loc}"


class Graph:
    """A growing DAG of steps: `nx` holds its structure (edges run from a dependency to its
    dependant), `node(id)` each step's record; the records and edges form the trace."""

    def __init__(self, prefix: str = "", _root: Graph | None = None) -> None:
        self.prefix = prefix
        self._root = _root or self
        if _root is None:
            self.nx: nx.DiGraph = nx.DiGraph()
            self.meta: dict[str, Any] = {}  # the trace's graph-level facts (the backend that ran it)
            self._nodes: dict[NodeId, Node] = {}
            self._callbacks: dict[NodeId, Callback] = {}
            self._outputs: dict[NodeId, Any] = {}
            self._unfinished_preds: dict[NodeId, int] = {}
            self._ready: deque[NodeId] = deque()
            self._waiters: dict[NodeId, list[asyncio.Future[Any]]] = {}
            self._counter = itertools.count()
            #: Called when a node becomes ready while the engine runs (it wakes the engine, which
            #: may be waiting on a node that waits for this one).
            self.on_ready: Callable[[], None] | None = None
            #: Called when the only code waiting for a node stopped waiting (it was cancelled):
            #: the engine cancels the node's work, so a failed `run.gather` leaves nothing running.
            self.on_abandon: Callable[[NodeId], None] | None = None
        else:
            self.nx = _root.nx
            self.meta = _root.meta

    # -- building -------------------------------------------------------------------------

    def scope(self, name: str) -> Graph:
        """A view of the same graph whose new node ids start with `name/` (for composed strategies)."""
        return Graph(prefix=f"{self.prefix}{name}/", _root=self._root)

    def generate(
        self,
        request: GenerationRequest | Callable[[Ctx], GenerationRequest],
        *,
        after: Iterable[NodeId] = (),
        label: str = "generate",
    ) -> NodeId:
        """A model call. Its output is a `Completion` with `request.n` choices."""
        build = request if callable(request) else (lambda _ctx, r=request: r)
        return self._add("model", build, after, label)

    def function(
        self, fn: Callback, *, after: Iterable[NodeId] = (), label: str = "function", tolerate_failures: bool = False
    ) -> NodeId:
        """A pure step (parse, vote, select, decide what comes next). May be sync or async.

        With `tolerate_failures` it runs once every dependency has finished, failed ones included
        (`ctx.ok(dep)` tells them apart): a vote over samples survives one failed sample.
        """
        return self._add("function", fn, after, label, tolerant=tolerate_failures)

    def tool(self, fn: Callback, *, after: Iterable[NodeId] = (), label: str = "tool") -> NodeId:
        """A tool call: a function whose trace is marked as a tool use."""
        return self._add("tool", fn, after, label)

    def _add(self, kind: Kind, fn: Callback, after: Iterable[NodeId], label: str, tolerant: bool = False) -> NodeId:
        root = self._root
        node = f"{self.prefix}{label}"
        if node in root._nodes:
            node = f"{node}#{next(root._counter)}"
        after = list(after)
        for dep in after:
            if dep not in root._nodes:
                raise KeyError(f"node {node!r} depends on unknown node {dep!r}")
        root._nodes[node] = Node(id=node, kind=kind, label=label, order=len(root._nodes), tolerant=tolerant)
        root.nx.add_node(node)
        root._callbacks[node] = fn
        for dep in after:
            root.nx.add_edge(dep, node)
        root._unfinished_preds[node] = 0
        for dep in after:
            root._count_dependency(dep, node)
        if root._unfinished_preds[node] == 0 and root._nodes[node].status == "pending":
            root._make_ready(node)
        return node

    def _make_ready(self, node: NodeId) -> None:
        self._ready.append(node)
        if self.on_ready is not None:
            self.on_ready()

    def _count_dependency(self, dep: NodeId, node: NodeId) -> None:
        status = self._nodes[dep].status
        if status == "failed" and self._nodes[node].tolerant:
            return
        if status == "failed":
            self._fail(node, f"depends on failed node {dep!r}", upstream=dep)
        elif status != "done":
            self._unfinished_preds[node] += 1

    # -- state, used by the engine ----------------------------------------------------------

    def node(self, node: NodeId) -> Node:
        """The record of a step (its status, request, output summary, usage, error, timings)."""
        return self._root._nodes[node]

    def nodes(self) -> list[Node]:
        """Every step's record, in the order they were added."""
        return list(self._root._nodes.values())

    def output(self, node: NodeId) -> Any:
        record = self.node(node)
        if record.status != "done":
            raise NodeFailed(node, record.error or "no output yet")
        return self._root._outputs[node]

    def callback(self, node: NodeId) -> Callback:
        return self._root._callbacks[node]

    def abandon(self, node: NodeId) -> None:
        """Nothing waits for `node` any more: stop it (failed, "cancelled") if it has not finished."""
        root = self._root
        if root._nodes[node].status in ("done", "failed"):
            return
        if root._nodes[node].status == "pending":
            root._fail(node, "cancelled")
        elif root.on_abandon is not None:
            root.on_abandon(node)

    def ready_count(self) -> int:
        return len(self._root._ready)

    def take_ready(self) -> list[NodeId]:
        root = self._root
        ready = list(root._ready)
        root._ready.clear()
        return ready

    def start(self, node: NodeId, at_s: float) -> Node:
        """Mark a ready step as running, `at_s` seconds into the run; its record, to fill in."""
        record = self.node(node)
        record.status, record.started_s = "running", at_s
        return record

    def finish(self, node: NodeId, output: Any) -> None:
        root = self._root
        record = root._nodes[node]
        root._outputs[node] = output
        record.status, record.output = "done", summarize(output)
        for succ in root.nx.successors(node):
            if root._nodes[succ].status != "pending":
                continue
            root._unfinished_preds[succ] -= 1
            if root._unfinished_preds[succ] == 0:
                root._make_ready(succ)
        for waiter in root._waiters.pop(node, []):
            if not waiter.done():
                waiter.set_result(output)

    def fail(self, node: NodeId, error: str, upstream: NodeId | None = None, exception: BaseException | None = None) -> None:
        self._root._fail(node, error, upstream)
        if upstream is None and exception is not None:
            self.node(node).exception = exception

    def finished(self, node: NodeId) -> asyncio.Future[Any]:
        """A future of `node`'s output (or its failure, as `NodeFailed`)."""
        root = self._root
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        record = self.node(node)
        if record.status == "done":
            future.set_result(root._outputs[node])
        elif record.status == "failed":
            future.set_exception(NodeFailed(node, record.error or "failed"))
        else:
            root._waiters.setdefault(node, []).append(future)
        return future

    def _fail(self, node: NodeId, error: str, upstream: NodeId | None = None) -> None:
        # Iterative, so a long chain of dependants cannot hit the recursion limit.
        stack = [(node, error, upstream)]
        while stack:
            current, err, up = stack.pop()
            record = self._nodes[current]
            if record.status in ("done", "failed"):
                continue
            record.status, record.error, record.upstream = "failed", err, up
            for waiter in self._waiters.pop(current, []):
                if not waiter.done():
                    waiter.set_exception(NodeFailed(current, err))
            for succ in self.nx.successors(current):
                dependant = self._nodes[succ]
                if dependant.status == "running":
                    continue  # it waits for this node (`Ctx.wait`), and is told there
                if dependant.tolerant and dependant.status == "pending":
                    self._unfinished_preds[succ] -= 1
                    if self._unfinished_preds[succ] == 0:
                        self._make_ready(succ)
                else:
                    stack.append((succ, f"depends on failed node {current!r}", current))

    def status(self, node: NodeId) -> Status:
        return self.node(node).status

    def origin(self, node: NodeId) -> Node:
        """The record of the step where `node`'s failure began: up its chain of failed
        dependencies (`upstream`) to the one that failed of itself; `node`'s own if none."""
        seen = set()
        record = self.node(node)
        while record.upstream is not None and record.id not in seen:
            seen.add(record.id)
            record = self.node(record.upstream)
        return record

    def root_cause(self, node: NodeId) -> str | None:
        """The error of the step where `node`'s failure began, named: "reason: BackendError: …",
        not "depends on failed node 'reason'". None if nothing on that chain failed."""
        record = self.origin(node)
        return f"{record.id}: {record.error}" if record.error else None

    def cause(self, node: NodeId) -> BaseException | None:
        """The exception raised where `node`'s failure began (as `root_cause` names the step)."""
        return self.origin(node).exception

    def usage(self) -> Usage:
        """What the graph's model calls cost (calls and tokens; no wall time)."""
        total = Usage()
        for record in self._root._nodes.values():
            total += record.usage()
        return total

    # -- trace ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The executed graph as networkx node-link JSON: each node's record, then the edges
        (`waited: true` on an edge from a step to the node that added it and waited for it: a
        strategy's node and the calls it made)."""
        root = self._root
        return {
            "directed": True,
            "multigraph": False,
            "graph": dict(root.meta),
            "nodes": [{**record.trace(), "id": record.id} for record in root._nodes.values()],
            "edges": [{**data, "source": u, "target": v} for u, v, data in root.nx.edges(data=True)],
        }


def summarize(value: Any, limit: int = 4000) -> Any:
    """A JSON-safe record of a node's output for the trace."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_none=True)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = json.dumps(repr(value))
        value = repr(value)
    if len(text) > limit and isinstance(value, str):
        return value[:limit] + "…"
    return value
