"""Monte Carlo tree search over reasoning steps: RAP (Hao et al. 2023, "Reasoning with Language
Model is Planning with World Model") and rStar (Qi et al. 2024, "Mutual Reasoning Makes Smaller
LLMs Stronger Problem-Solvers").

A state is the question's solution so far, one line per step; it is terminal once a line gives
the answer. The search (strategies/mcts_search.py) selects by UCT, expands a leaf by sampling
`children` next steps as one request with n, evaluates a new node and backs its value up the path.
How a node is valued (`value`):
* `verifier`: `rollouts` completions of the node to an answer (one request with n), each scored by
  `--verifier` (steps reduced by `aggregate`), the value their mean; with no rollouts the verifier
  scores the partial solution itself, as a process reward model values a prefix;
* `consistency`: the rollouts' answers against every answer the search has reached so far, the
  value the share of those that agree (RAP's and rStar's self-consistency reward).
Every finished path (a terminal node, a rollout) is a candidate, with its value. The answer is
the one whose candidates' values sum highest (`final="vote"`) or the best candidate's
(`"best"`). rStar's mutual consistency (`mutual=N`): the N best candidates each have a random
20-80% of their steps given back to the model, which completes the rest; a candidate whose
completion reaches its answer is mutually consistent, and only those are chosen from (all, if
none is). rStar asks a second model to complete; here it is the same model, sampling afresh.

Defaults: UCT's exploration constant 2, rStar's (RAP uses 1): on the step simulator
(`python -m reasoner.bench.measure.frontier`'s slip rates, 80 questions, 16 iterations) it beat 1
by 5 points with the checker at two simulator seeds, and by 5 with the judge at one. One rollout a node, because a
value of the partial path alone rewards no progress towards an answer: without rollouts the search
spreads wide before it goes deep, and needs more iterations to finish a path.

The tree is the trace: iteration i's calls are in scope `iter{i}`, each labelled with the node
(`expand@2.1`, `rollout@2.1.3`, `verify@2.1.3`), and `details["tree"]` lists every node's
visits and values.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from reasoner.answers import extract_answer
from reasoner.run import Run
from reasoner.types import Answer, GenerationRequest
from reasoner.verifiers import Verdict, Verifier, open_verifier
from reasoner.strategies.mcts_search import MCTSResult, mcts
from reasoner.strategies.stepwise import StepSearch, Steps, finished, lines_of, step_of, step_request
from reasoner.strategies.tree_search import SearchNode

TREE_SHOWN = 256  # nodes listed in details["tree"]


def answer_of(steps: Steps) -> str | None:
    return extract_answer(steps[-1]) if finished(steps) else None


class StepTree:
    """The search's `Space`: states grow by sampled steps and are valued as the options say. It
    keeps every finished path it saw, with its value, to answer from."""

    def __init__(self, options: MCTS, question: str, verifier: Verifier) -> None:
        self.options, self.question, self.verifier = options, question, verifier
        self.paths: dict[Steps, float] = {}
        self.reached: Counter[str] = Counter()  # answers reached, for consistency values
        self.calls = 0  # a distinct seed for each sampling call

    def is_terminal(self, state: Steps) -> bool:
        return finished(state)

    def _request(self, steps: Steps, n: int, whole: bool = False) -> GenerationRequest:
        self.calls += 1
        return step_request(self.options, self.question, steps, k=self.options.k, n=n, whole=whole, seed_offset=self.calls)

    async def expand(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[list[Steps]]:
        replies = await run.gather(*(run.generate(self._request(n.state, self.options.children), label=f"expand@{n.tag}") for n in nodes))
        return [[(*n.state, s) for c in r.choices if (s := step_of(c.text))] for n, r in zip(nodes, replies)]  # type: ignore[union-attr]

    async def evaluate(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[float]:
        return list(await run.gather(*(self.value(run, n) for n in nodes)))  # type: ignore[arg-type]  # not tolerant

    async def value(self, run: Run, node: SearchNode) -> float:
        paths: list[Steps] = [node.state]
        if not node.terminal and self.options.rollouts:
            reply = await run.generate(self._request(node.state, self.options.rollouts, whole=True), label=f"rollout@{node.tag}")
            paths = [(*node.state, *lines_of(c.text)) for c in reply.choices]
        if self.options.value == "verifier":
            verdicts = await run.gather(
                *(run.verify(self.verifier, self.question, list(p), label=f"verify@{node.tag}") for p in paths), tolerate=True
            )
            # A failed verification scores its path 0 rather than ending the search.
            scores = [v.score(self.options.aggregate) if isinstance(v, Verdict) else 0.0 for v in verdicts]
        else:
            self.reached.update(a for p in paths if (a := answer_of(p)) is not None)
            total = sum(self.reached.values())
            scores = [self.reached[a] / total if (a := answer_of(p)) is not None else 0.0 for p in paths]
        for path, score in zip(paths, scores):
            if finished(path):
                self.paths[path] = max(score, self.paths.get(path, 0.0))
        return sum(scores) / len(scores)


class MCTS(StepSearch):
    name = "mcts"
    summary = "Monte Carlo tree search over reasoning steps (RAP, rStar): UCT, n-sampled expansions, verifier or consistency values."

    iterations: int = Field(16, ge=1, le=1024, description="simulations: each selects, expands or evaluates one node, and backs up")
    children: int = Field(3, ge=1, le=32, description="next steps sampled when a node is expanded (one request with n)")
    depth: int = Field(10, ge=1, le=40, description="most steps in a path of the tree")
    exploration: float = Field(2.0, ge=0.0, le=10.0, description="UCT's exploration constant c (values lie in [0, 1]; rStar's 2)")
    value: Literal["verifier", "consistency"] = Field(
        "verifier",
        description="verifier: --verifier scores the rollouts (or the partial path); consistency: rollouts' agreement with the answers reached",
    )
    rollouts: int = Field(
        1, ge=0, le=32, description="completions to an answer per node evaluated (one request with n); 0: value the partial path"
    )
    mutual: int = Field(
        0, ge=0, le=32, description="rStar's mutual consistency: the N best finished paths each completed again from a masked suffix (0: off)"
    )
    final: Literal["vote", "best"] = Field("vote", description="vote: the answer whose finished paths' values sum highest; best: the best path's")
    max_tokens: int = Field(256, ge=1, description="tokens per rollout (a step takes at most 128)")

    @model_validator(mode="after")
    def _consistency_needs_rollouts(self) -> MCTS:
        if self.value == "consistency" and self.rollouts == 0:
            raise ValueError("mcts: value='consistency' compares the answers of rollouts, so it needs rollouts >= 1 (got rollouts=0)")
        return self

    async def forward(self, run: Run, question: str) -> Answer:
        tree = StepTree(self, question, open_verifier(self.verifier))
        result = await mcts(run, (), tree, iterations=self.iterations, depth=self.depth, exploration=self.exploration)
        candidates = sorted(tree.paths.items(), key=lambda pv: -pv[1])
        details = {"stats": result.stats(), "tree": self.shown(result), "value": self.value, "verifier": tree.verifier.spec}
        if self.mutual and candidates:
            candidates = await self.mutually_consistent(run.scope("mutual"), question, candidates, details)
        details["finished"] = [{"answer": answer_of(p), "value": round(v, 6), "steps": len(p)} for p, v in candidates[:16]]
        if not candidates:
            return Answer(answer=None, text="", details=details)
        steps, score = candidates[0]
        if self.final == "vote":
            totals: defaultdict[str, float] = defaultdict(float)
            for path, v in candidates:
                totals[answer_of(path) or ""] += v
            best = max(totals, key=lambda a: totals[a])  # ties: the answer of the better-ranked path
            steps, score = next((p, v) for p, v in candidates if (answer_of(p) or "") == best)
            details["totals"] = {a: round(t, 6) for a, t in totals.items()}
        return Answer(answer=answer_of(steps), text="\n".join(steps), score=score, details=details)

    async def mutually_consistent(
        self, run: Run, question: str, candidates: list[tuple[Steps, float]], details: dict[str, object]
    ) -> list[tuple[Steps, float]]:
        """The candidates whose masked completion agrees with them (all of them if none does)."""
        checked = candidates[: self.mutual]
        rng = random.Random(self.seed)
        cuts = [int(len(p) * rng.uniform(0.2, 0.8)) for p, _ in checked]  # the steps given back
        replies = await run.gather(*(
            run.generate(step_request(self, question, p[:cut], k=self.k, whole=True, seed_offset=10_000 + i), label=f"discriminate{i}")
            for i, ((p, _), cut) in enumerate(zip(checked, cuts))
        ))  # fmt: skip
        agreed = [
            answer_of((*p[:cut], *lines_of(r.choices[0].text))) == answer_of(p)  # type: ignore[union-attr]
            for (p, _), cut, r in zip(checked, cuts, replies)
        ]
        details["mutual"] = [{"answer": answer_of(p), "given": cut, "agrees": ok} for (p, _), cut, ok in zip(checked, cuts, agreed)]
        consistent = [c for c, ok in zip(checked, agreed) if ok]
        return consistent or candidates

    def shown(self, result: MCTSResult) -> list[dict[str, object]]:
        return [
            {"id": n.tag, "step": n.state[-1] if n.state else "", "visits": n.visits, "q": round(n.q, 4),
             "value": None if n.value is None else round(n.value, 4), "terminal": n.terminal}
            for n in result.root.walk()[:TREE_SHOWN]
        ]  # fmt: skip
