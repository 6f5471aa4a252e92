"""Monte Carlo tree search over a `Space` (the task side of strategies/tree_search.py), the search
of RAP (Hao et al. 2023, "Reasoning with Language Model is Planning with World Model") and rStar
(Qi et al. 2024, "Mutual Reasoning Makes Smaller LLMs Stronger Problem-Solvers"), kept apart from
any task as bfs and dfs are.

Each iteration (a simulation) walks down from the root by UCT (Kocsis and Szepesvári 2006),

    Q(child) + c * sqrt(ln N(parent) / N(child)),   Q = the mean value backed up through the child,

taking an unvisited child first, in the order the space proposed them. Where the walk ends:
* a child never evaluated is evaluated (the space says how: a verifier, rollouts to an answer);
* a leaf already evaluated is expanded, its children proposed in one call of the space (one
  request with n), and the first of them evaluated;
* a terminal state, one at the depth limit or one whose expansion proposed nothing gives its own
  value again, without a call.
That value is backed up the path: each node's visit count N goes up by one, its value sum by the
value. The search ends after `iterations`, or sooner once no node is left to evaluate or expand.
Values are taken to lie in [0, 1], the scale the exploration constant `c` is set for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reasoner.run import Run
from reasoner.strategies.tree_search import SearchNode, Space


@dataclass(eq=False)
class TreeNode:
    """A state in the tree with its statistics. `id` numbers children from 1 on the path from the
    root ("2.1"); "" is the root."""

    state: Any
    id: str = ""
    depth: int = 0
    terminal: bool = False
    visits: int = 0
    total: float = 0.0  # the values backed up through this node
    value: float | None = None  # its own evaluation, once made
    expanded: bool = False
    children: list[TreeNode] = field(default_factory=list)

    @property
    def q(self) -> float:
        return self.total / self.visits if self.visits else 0.0

    @property
    def tag(self) -> str:
        return self.id or "root"

    def walk(self) -> list[TreeNode]:
        """This node and every node under it, parents before children."""
        out = [self]
        for child in self.children:
            out += child.walk()
        return out

    def as_search_node(self) -> SearchNode:
        return SearchNode(state=self.state, id=self.id, depth=self.depth, score=self.value, terminal=self.terminal)


def uct(child: TreeNode, parent_visits: int, exploration: float) -> float:
    """The UCT score of `child`; infinite while it is unvisited, so every child is tried once."""
    if child.visits == 0:
        return math.inf
    return child.q + exploration * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select(root: TreeNode, exploration: float) -> list[TreeNode]:
    """The path from the root down by UCT to the node to work on: it stops at an unvisited child or
    a node not expanded (ties go to the child proposed first)."""
    path = [root]
    node = root
    while node.expanded and node.children and not node.terminal:
        parent = node
        node = max(parent.children, key=lambda c: uct(c, parent.visits, exploration))
        path.append(node)
        if node.visits == 0:
            break
    return path


def backpropagate(path: list[TreeNode], value: float) -> None:
    for node in path:
        node.visits += 1
        node.total += value


@dataclass
class MCTSResult:
    root: TreeNode
    iterations: int = 0
    expansions: int = 0
    evaluations: int = 0
    revisits: int = 0  # iterations that ended on a terminal or spent leaf: no call made

    def stats(self) -> dict[str, int]:
        nodes = self.root.walk()
        return {
            "iterations": self.iterations, "expansions": self.expansions, "evaluations": self.evaluations,
            "revisits": self.revisits, "nodes": len(nodes) - 1, "terminal": sum(n.terminal for n in nodes),
            "max_depth": max(n.depth for n in nodes),
        }  # fmt: skip


def _open(node: TreeNode, depth: int) -> bool:
    """Whether the node still needs work: an evaluation, or an expansion."""
    return node.value is None or (not node.expanded and not node.terminal and node.depth < depth)


async def mcts(
    run: Run, root: Any, space: Space, *, iterations: int, depth: int, exploration: float = 1.0,
    scope: Callable[[int], str] = lambda i: f"iter{i}",
) -> MCTSResult:
    """Search from state `root` for `iterations` simulations; each runs in the scope `scope(i)` of
    the graph, so the trace shows the tree grow iteration by iteration."""
    tree = TreeNode(state=root, terminal=space.is_terminal(root), value=0.0)
    result = MCTSResult(tree)
    for i in range(iterations):
        if not any(_open(n, depth) for n in tree.walk()):
            break  # every state is evaluated and every leaf terminal or at the limit
        result.iterations += 1
        step = run.scope(scope(i))
        path = select(tree, exploration)
        leaf = path[-1]
        if leaf.value is None:
            await _evaluate(step, space, leaf, result)
        elif not leaf.expanded and not leaf.terminal and leaf.depth < depth:
            [states] = await space.expand(step, [leaf.as_search_node()], leaf.tag)
            result.expansions += 1
            leaf.expanded = True
            leaf.children = [
                TreeNode(state=s, id=f"{leaf.id}.{j}" if leaf.id else str(j), depth=leaf.depth + 1, terminal=space.is_terminal(s))
                for j, s in enumerate(_distinct(states), 1)
            ]
            if leaf.children:
                path.append(leaf.children[0])
                await _evaluate(step, space, leaf.children[0], result)
        else:
            result.revisits += 1
        backpropagate(path, path[-1].value or 0.0)
    return result


async def _evaluate(run: Run, space: Space, node: TreeNode, result: MCTSResult) -> None:
    [value] = await space.evaluate(run, [node.as_search_node()], node.tag)
    node.value = float(value)
    result.evaluations += 1


def _distinct(states: list[Any]) -> list[Any]:
    """The proposed states without repeats: a repeated sibling would only split its visits."""
    seen: dict[str, Any] = {}
    for state in states:
        seen.setdefault(repr(state), state)
    return list(seen.values())


__all__ = ["MCTSResult", "TreeNode", "backpropagate", "mcts", "select", "uct"]
