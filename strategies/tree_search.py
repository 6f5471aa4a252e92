"""Tree search as plain loops: BFS (a beam) and DFS (with pruning and backtracking), the two
searches of Tree of Thoughts (Yao et al. 2023), kept apart from any task as in llm-reasoners.

A `Space` is the task side: it proposes the children of states and scores states, through the
`Run` it is given, and says which states are terminal. The search decides what to keep, what to
expand next and when to stop. A search hands the space a whole level at once (BFS: the beam; DFS:
one state, then all its children), so the space can start that level's model calls together in
one `run.gather`: they run concurrently, and identical ones are served as one request with `n`.
Each search returns a `SearchResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from reasoner.run import Run


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
    async def expand(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[list[Any]]:
        """The child states proposed for each of `nodes` (one list per node, in order); `tag`
        names the round (a level, or the state expanded) for node labels."""
        ...

    async def evaluate(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[float]:
        """One score per node, higher is better."""
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
    for parent, kids in zip(parents, states, strict=True):
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


async def _scored(run: Run, nodes: list[SearchNode], space: Space, tag: str, stats: Stats) -> list[SearchNode]:
    """`nodes` with their scores, best first (stable: ties keep proposal order)."""
    stats.evaluated += len(nodes)
    scores = await space.evaluate(run, nodes, tag)
    scored = [n.model_copy(update={"score": float(s)}) for n, s in zip(nodes, scores, strict=True)]
    return sorted(scored, key=lambda n: -(n.score or 0.0))


def _result(finished: list[SearchNode], stats: Stats) -> SearchResult:
    best = sorted(finished, key=lambda n: (not n.terminal, -(n.score or 0.0)))
    return SearchResult(finished=best, stats={**asdict(stats), "finished": len(best)})


async def bfs(run: Run, root: Any, space: Space, *, breadth: int, depth: int) -> SearchResult:
    """Expand every state of the beam, score all their children together, keep the best `breadth`.

    A kept terminal state is finished and leaves the beam, so the beam narrows as answers are found;
    the search ends when the beam is empty or `depth` levels are done.
    """
    stats, finished = Stats(), list[SearchNode]()
    beam = [SearchNode(state=root)]
    for d in range(1, depth + 1):
        stats.expanding(beam)
        children = _children(beam, await space.expand(run, beam, f"d{d}"), space, stats)
        if not children:
            break
        ranked = await _scored(run, children, space, f"d{d}", stats)
        kept = ranked[:breadth]
        stats.pruned += len(ranked) - len(kept)
        finished.extend(n for n in kept if n.terminal or d == depth)
        beam = [n for n in kept if not n.terminal]
        if not beam:
            break
    return _result(finished, stats)


async def dfs(run: Run, root: Any, space: Space, *, depth: int, threshold: float, max_expansions: int) -> SearchResult:
    """Expand the most promising state first; children scored under `threshold` are pruned.

    The search ends at the first terminal state that passes the threshold (the best of its
    siblings), when no state is left to expand, or after `max_expansions` expansions. Unfinished
    states reaching `depth` are kept as finished-incomplete and the search backtracks.
    """
    stats, finished = Stats(), list[SearchNode]()
    stack = [SearchNode(state=root)]  # states still to expand, the next on top
    last: SearchNode | None = None  # the state expanded before
    while stack and len(stats.order) < max_expansions:
        node = stack.pop()
        stats.backtracks += last is not None and node.parent_id != last.id
        stats.expanding([node])
        last = node
        children = _children([node], await space.expand(run, [node], node.tag), space, stats)
        if not children:
            continue
        ranked = await _scored(run, children, space, node.tag, stats)
        kept = [n for n in ranked if (n.score or 0.0) >= threshold]
        stats.pruned += len(ranked) - len(kept)
        answers = [n for n in kept if n.terminal]
        if answers:
            finished.append(answers[0])
            break
        finished.extend(n for n in kept if n.depth >= depth)
        stack.extend(n for n in reversed(kept) if n.depth < depth)
    return _result(finished, stats)
