"""A strategy's graph of steps: model calls, tool calls and pure functions, joined by data dependencies.

Strategies build a `Graph`; the `Engine` (reasoner.engine) runs it. A node's callback receives a
`Ctx` that reads its predecessors' outputs and can add nodes to the graph, so searches and loops
grow the graph while it runs. The executed graph, with what every node did, is the trace.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel

from reasoner.types import GenerationRequest

NodeId = str
Kind = Literal["model", "tool", "function"]
Status = Literal["pending", "running", "waiting", "done", "failed"]
Callback = Callable[["Ctx"], Any | Awaitable[Any]]


@dataclass(frozen=True)
class Forward:
    """Returned by a node to say: my output is the output of `target` (a node I just added).

    This is how a loop or a search continues: a step decides to go on, adds the next steps, and
    hands its place in the graph to the last of them, so whatever depends on it waits for them.
    """

    target: NodeId


class Ctx(Mapping[NodeId, Any]):
    """What a node's callback sees: its predecessors' outputs, by node id, and the graph to grow."""

    def __init__(self, graph: Graph, node: NodeId) -> None:
        self.graph = graph
        self.node = node

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
        return self.graph.nx.nodes[key].get("error")


class NodeFailed(Exception):
    """A node's own error, or the error of a node it depends on."""

    def __init__(self, node: NodeId, error: str) -> None:
        super().__init__(f"node {node!r} failed: {error}")
        self.node = node
        self.error = error


class Graph:
    """A growing DAG of steps. `nx` is the networkx graph whose node attributes form the trace."""

    def __init__(self, prefix: str = "", _root: Graph | None = None) -> None:
        self.prefix = prefix
        self._root = _root or self
        if _root is None:
            self.nx: nx.DiGraph = nx.DiGraph()
            self._callbacks: dict[NodeId, Callback] = {}
            self._outputs: dict[NodeId, Any] = {}
            self._unfinished_preds: dict[NodeId, int] = {}
            self._ready: deque[NodeId] = deque()
            self._counter = itertools.count()
        else:
            self.nx = _root.nx

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
        if node in root.nx:
            node = f"{node}#{next(root._counter)}"
        after = list(after)
        for dep in after:
            if dep not in root.nx:
                raise KeyError(f"node {node!r} depends on unknown node {dep!r}")
        root.nx.add_node(node, kind=kind, label=label, status="pending", order=root.nx.number_of_nodes())
        if tolerant:
            root.nx.nodes[node]["tolerant"] = True
        root._callbacks[node] = fn
        for dep in after:
            root.nx.add_edge(dep, node)
        root._unfinished_preds[node] = 0
        for dep in after:
            root._count_dependency(dep, node)
        if root._unfinished_preds[node] == 0 and root.nx.nodes[node]["status"] == "pending":
            root._ready.append(node)
        return node

    def _count_dependency(self, dep: NodeId, node: NodeId) -> None:
        status = self.nx.nodes[dep]["status"]
        if status == "failed" and self.nx.nodes[node].get("tolerant"):
            return
        if status == "failed":
            self._fail(node, f"depends on failed node {dep!r}", upstream=dep)
        elif status != "done":
            self._unfinished_preds[node] += 1

    # -- state, used by the engine ----------------------------------------------------------

    def output(self, node: NodeId) -> Any:
        root = self._root
        if root.nx.nodes[node]["status"] != "done":
            raise NodeFailed(node, root.nx.nodes[node].get("error") or "no output yet")
        return root._outputs[node]

    def callback(self, node: NodeId) -> Callback:
        return self._root._callbacks[node]

    def take_ready(self) -> list[NodeId]:
        root = self._root
        ready = list(root._ready)
        root._ready.clear()
        return ready

    def forward(self, node: NodeId, target: NodeId) -> None:
        """Make `node` finish with `target`'s output, once `target` is done."""
        root = self._root
        if target not in root.nx:
            raise KeyError(f"node {node!r} forwards to unknown node {target!r}")
        if target == node or nx.has_path(root.nx, node, target):
            # The target would wait for this node's output while this node waits for the target's.
            raise ValueError(f"node {node!r} cannot forward to {target!r}: {target!r} depends on it")
        root.nx.add_edge(target, node, forward=True)
        root.nx.nodes[node]["status"] = "waiting"
        root.nx.nodes[node]["forward"] = target
        root._unfinished_preds[node] = 0
        root._count_dependency(target, node)
        if root._unfinished_preds[node] == 0 and root.nx.nodes[node]["status"] == "waiting":
            root.finish(node, root._outputs[target])

    def finish(self, node: NodeId, output: Any) -> None:
        root = self._root
        attrs = root.nx.nodes[node]
        root._outputs[node] = output
        attrs["status"] = "done"
        attrs["output"] = summarize(output)
        for succ in root.nx.successors(node):
            if root.nx.nodes[succ]["status"] not in ("pending", "waiting"):
                continue
            root._unfinished_preds[succ] -= 1
            if root._unfinished_preds[succ] == 0:
                if root.nx.nodes[succ]["status"] == "waiting":
                    root.finish(succ, output)
                else:
                    root._ready.append(succ)

    def fail(self, node: NodeId, error: str) -> None:
        self._root._fail(node, error)

    def _fail(self, node: NodeId, error: str, upstream: NodeId | None = None) -> None:
        # Iterative, so a long chain of dependants cannot hit the recursion limit.
        stack = [(node, error, upstream)]
        while stack:
            current, err, up = stack.pop()
            attrs = self.nx.nodes[current]
            if attrs["status"] in ("done", "failed"):
                continue
            attrs["status"] = "failed"
            attrs["error"] = err
            if up is not None:
                attrs["upstream"] = up
            for succ in self.nx.successors(current):
                succ_attrs = self.nx.nodes[succ]
                if succ_attrs.get("tolerant") and succ_attrs["status"] == "pending":
                    self._unfinished_preds[succ] -= 1
                    if self._unfinished_preds[succ] == 0:
                        self._ready.append(succ)
                else:
                    stack.append((succ, f"depends on failed node {current!r}", current))

    def status(self, node: NodeId) -> Status:
        return self._root.nx.nodes[node]["status"]

    def root_cause(self, node: NodeId) -> str | None:
        """The error of the step where `node`'s failure began, named: "reason: BackendError: …",
        not "depends on failed node 'reason'". None if nothing on that chain failed."""
        attrs = self._root.nx.nodes
        seen = set()
        while "upstream" in attrs[node] and node not in seen:
            seen.add(node)
            node = attrs[node]["upstream"]
        error = attrs[node].get("error")
        return f"{node}: {error}" if error else None

    # -- trace ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The executed graph as networkx node-link JSON (nodes with attributes, then edges)."""
        return nx.node_link_data(self._root.nx, edges="edges")


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
