"""The tree searches on their own: a level's calls start together, so identical ones merge into one
request with n."""

from __future__ import annotations

from collections.abc import Sequence

from reasoner.run import Run
from reasoner.strategies.tree_search import SearchNode, bfs
from reasoner.strategy import Strategy
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import Answer, GenerationRequest

QUESTION = "Tom has 3 apples and buys 4 more. He gives 2 away. How many apples does he have?"


class Grow:
    """A search space whose states all ask the same ("grow", "rate"): a level's calls are identical."""

    def is_terminal(self, state: str) -> bool:
        return False

    async def expand(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[list[str]]:
        request = GenerationRequest(prompt="grow", n=2, temperature=0.7)
        grown = await run.gather(*(run.generate(request, label=f"grow@{n.tag}") for n in nodes))
        return [[n.state + c.text for c in g.choices] for n, g in zip(nodes, grown)]  # type: ignore[union-attr]

    async def evaluate(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[float]:
        request = GenerationRequest(prompt="rate", temperature=0.7)
        rated = await run.gather(*(run.generate(request, label=f"rate@{n.tag}") for n in nodes))
        return [float(r.text) for r in rated]  # type: ignore[union-attr]


class GrowSearch(Strategy):
    name = "grow-search"
    summary = "for tests"

    async def forward(self, run: Run, question: str) -> Answer:
        result = await bfs(run, "", Grow(), breadth=2, depth=2)
        return Answer(answer=None, text="", details=result.model_dump())


async def test_a_levels_identical_requests_are_one_request_with_n() -> None:
    # bfs hands the space the whole beam, and the space starts its calls in one gather, so the
    # engine sees them together and merges the identical ones.
    backend = ScriptedBackend([("grow", list("abcdef")), ("rate", ["1", "2", "3", "4", "5", "6"])])
    solution = await GrowSearch().solve(QUESTION, backend)
    assert solution.error is None
    # Level 1: the root's sampling (n=2), its 2 children's ratings as one request with n=2;
    # level 2: the 2 kept states' samplings as one request with n=4, their 4 children's ratings too.
    assert [(r.prompt, r.n) for r in backend.requests] == [("grow", 2), ("rate", 2), ("grow", 4), ("rate", 4)]
    merged = {n["id"]: n["merged"]["n"] for n in solution.trace["nodes"] if n.get("merged")}
    assert merged == {"grow@1": 4, "grow@2": 4, "rate@1": 2, "rate@2": 2} | {f"rate@{i}": 4 for i in ("2.1", "2.2", "1.1", "1.2")}
    # Each node got its own share of the merged choices: "b" (rated 2) leads the beam and grew "c"
    # and "d", "a" grew "e" and "f", whose states were rated last and best.
    assert [(f["id"], f["state"], f["score"]) for f in solution.details["finished"]] == [("1.2", "af", 6.0), ("1.1", "ae", 5.0)]
    assert solution.details["stats"]["expanded"] == [1, 2]
