"""Tree search that grows a graph: BFS (a beam) and DFS (with pruning and backtracking), the two
searches of Tree of Thoughts (Yao et al. 2023), kept apart from any task as in llm-reasoners.

A `Space` is the task side: it adds the graph steps that expand states into children and that
score states, and says which states are terminal. The search decides what to keep, what to expand
next and when to stop. Each decision is a function node that adds the next round of steps and
forwards to them, so the graph grows while it runs; the steps of one round are siblings and run
concurrently. Each search returns the node whose output is a `SearchResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from reasoner.graph import Ctx, Forward, Graph, NodeId


class SearchNode(BaseModel):
    """A state in the search tree."""

    model_config = ConfigDict(frozen=True)

    state: Any
    id: str = ""  # child numbers (from 1) on the path from the root, "2.1"; "" is the root
    depth: int = 0
    score: float | None = None
    terminal: bool = False  # the task says the state is finished (not just out of depth)

    @property
    def parent_id(self) -> str:
        return self.id.rpartition(".")[0]

    @property
    def tag(self) -> str:
        return self.id or "root"


class Space(Protocol):
    def expand(self, graph: Graph, nodes: Sequence[SearchNode], tag: str, after: Sequence[NodeId]) -> NodeId:
        """Add the steps (after the nodes `after`, which rated `nodes`) that propose children of
        `nodes`; the node returned outputs one list of child states per node."""
        ...

    def evaluate(self, graph: Graph, nodes: Sequence[SearchNode], after: NodeId, tag: str) -> NodeId:
        """Add the steps (after node `after`) that score `nodes`; the node returned outputs one
        float per node, higher is better."""
        ...

    def is_terminal(self, state: Any) -> bool: ...


@dataclass
class Stats:
    generated: int = 0  # child states proposed, duplicates included
    duplicates: int = 0  # repeats of a state already proposed in the same round, dropped unscored
    evaluated: int = 0
    pruned: int = 0  # scored states dropped: outside the beam (BFS) or under the threshold (DFS)
    backtracks: int = 0  # DFS: expansions of a state other than a child of the one just expanded
    terminal: int = 0  # proposed states that are terminal
    expanded: list[int] = field(default_factory=list)  # states expanded, by depth (index 0: the root)
    order: list[str] = field(default_factory=list)  # ids of the states expanded, in order

    def expanding(self, nodes: Sequence[SearchNode]) -> None:
        for node in nodes:
            self.expanded.extend([0] * (node.depth + 1 - len(self.expanded)))
            self.expanded[node.depth] += 1
            self.order.append(node.id)


class SearchResult(BaseModel):
    #: The states the search ended on, best first: terminal ones it kept, and those it kept at
    #: the depth limit unfinished (complete ones first, then by score).
    finished: list[SearchNode]
    stats: dict[str, Any]


def _children(parents: Sequence[SearchNode], states: list[list[Any]], space: Space, stats: Stats) -> list[SearchNode]:
    """The proposed states as tree nodes, without repeats (scoring a state twice buys nothing)."""
    seen: set[Any] = set()
    out = []
    for parent, kids in zip(parents, states):
        for i, state in enumerate(kids, 1):
            stats.generated += 1
            key = repr(state)
            if key in seen:
                stats.duplicates += 1
                continue
            seen.add(key)
            terminal = space.is_terminal(state)
            stats.terminal += terminal
            node_id = f"{parent.id}.{i}" if parent.id else str(i)
            out.append(SearchNode(state=state, id=node_id, depth=parent.depth + 1, terminal=terminal))
    return out


def _ranked(nodes: list[SearchNode], scores: Sequence[float]) -> list[SearchNode]:
    scored = [n.model_copy(update={"score": float(s)}) for n, s in zip(nodes, scores, strict=True)]
    return sorted(scored, key=lambda n: -(n.score or 0.0))  # stable: ties keep proposal order


def _result(finished: list[SearchNode], stats: Stats) -> SearchResult:
    best = sorted(finished, key=lambda n: (not n.terminal, -(n.score or 0.0)))
    return SearchResult(finished=best, stats={**asdict(stats), "finished": len(best)})


def bfs(graph: Graph, root: Any, space: Space, *, breadth: int, depth: int) -> NodeId:
    """Expand every state of the beam, score all their children together, keep the best `breadth`.

    A kept terminal state is finished and leaves the beam, so the beam narrows as answers are found;
    the search ends when the beam is empty or `depth` levels are done.
    """
    stats, finished = Stats(), list[SearchNode]()

    def level(beam: list[SearchNode], d: int, rated: Sequence[NodeId] = ()) -> NodeId:
        stats.expanding(beam)
        expanded = space.expand(graph, beam, f"d{d}", rated)

        def evaluate(ctx: Ctx) -> Forward | SearchResult:
            children = _children(beam, ctx[expanded], space, stats)
            if not children:
                return _result(finished, stats)
            scores = space.evaluate(graph, children, expanded, f"d{d}")
            stats.evaluated += len(children)

            def select(ctx: Ctx) -> Forward | SearchResult:
                ranked = _ranked(children, ctx[scores])
                kept = ranked[:breadth]
                stats.pruned += len(ranked) - len(kept)
                finished.extend(n for n in kept if n.terminal or d == depth)
                beam = [n for n in kept if not n.terminal and d < depth]
                return Forward(level(beam, d + 1, [scores])) if beam else _result(finished, stats)

            return Forward(graph.function(select, after=[scores], label=f"select@d{d}"))

        return graph.function(evaluate, after=[expanded], label=f"evaluate@d{d}")

    return level([SearchNode(state=root)], 1)


def dfs(graph: Graph, root: Any, space: Space, *, depth: int, threshold: float, max_expansions: int) -> NodeId:
    """Expand the most promising state first; children scored under `threshold` are pruned.

    The search ends at the first terminal state that passes the threshold (the best of its
    siblings), when no state is left to expand, or after `max_expansions` expansions. Unfinished
    states reaching `depth` are kept as finished-incomplete and the search backtracks.
    """
    stats, finished = Stats(), list[SearchNode]()
    stack: list[tuple[SearchNode, NodeId]] = []  # states still to expand, with their rating; the next on top

    def expand(node: SearchNode, rated: Sequence[NodeId] = ()) -> NodeId:
        stats.expanding([node])
        expanded = space.expand(graph, [node], node.tag, rated)

        def evaluate(ctx: Ctx) -> Forward | SearchResult:
            children = _children([node], ctx[expanded], space, stats)
            if not children:
                return next_after(node)
            scores = space.evaluate(graph, children, expanded, node.tag)
            stats.evaluated += len(children)

            def decide(ctx: Ctx) -> Forward | SearchResult:
                ranked = _ranked(children, ctx[scores])
                kept = [n for n in ranked if (n.score or 0.0) >= threshold]
                stats.pruned += len(ranked) - len(kept)
                answers = [n for n in kept if n.terminal]
                if answers:
                    finished.append(answers[0])
                    return _result(finished, stats)
                finished.extend(n for n in kept if n.depth >= depth)
                stack.extend((n, scores) for n in reversed(kept) if n.depth < depth)
                return next_after(node)

            return Forward(graph.function(decide, after=[scores], label=f"decide@{node.tag}"))

        return graph.function(evaluate, after=[expanded], label=f"evaluate@{node.tag}")

    def next_after(last: SearchNode) -> Forward | SearchResult:
        if not stack or len(stats.order) >= max_expansions:
            return _result(finished, stats)
        node, rated = stack.pop()
        stats.backtracks += node.parent_id != last.id
        return Forward(expand(node, [rated]))

    return expand(SearchNode(state=root))
