"""What a verifier is: something that scores a candidate solution, whole or step by step.

A step is one line of reasoning. A verifier adds nodes to the strategy's graph (so its calls are
traced and counted like any model call) and the node it returns outputs a `Verdict`: one score in
[0, 1] per step (a whole-solution verifier gives one score for the lot), the first step it holds
wrong, and why where it can say. Search strategies reduce the step scores to one number with an
aggregation, as Hugging Face's search-and-learn does: `last` (the score of the latest step, which
for a process reward model already reflects what came before), `min` (a chain is as good as its
weakest step) or `product` (the chance every step is right, if the scores were independent).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from reasoner.graph import Ctx, Graph, NodeId

Aggregation = Literal["last", "min", "product"]
#: A step scored below this is wrong: where a verifier's first error is.
WRONG_BELOW = 0.5
#: The candidate's steps: known when the graph is built, or read from predecessors at run time.
Steps = Sequence[str] | Callable[[Ctx], Sequence[str]]


class Verdict(BaseModel):
    """A verifier's judgement of one candidate."""

    verifier: str
    steps: list[str]
    #: One score per step in [0, 1]; a whole-solution verdict has a single score.
    scores: list[float]
    per_step: bool = True
    #: Why a step was judged wrong, by step index (as text), where the verifier can say.
    notes: dict[str, str] = Field(default_factory=dict)

    @property
    def first_error(self) -> int | None:
        """The index of the first step scored wrong; None when none is (or nothing was scored).
        A whole-solution verdict that rejects the solution cannot locate the error: 0."""
        for i, score in enumerate(self.scores):
            if score < WRONG_BELOW:
                return i
        return None

    def score(self, how: Aggregation = "min") -> float:
        return aggregate(self.scores, how)


def aggregate(scores: Sequence[float], how: Aggregation = "min") -> float:
    """Step scores as one number. No steps scores 0: an empty solution is no solution."""
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "product":
        return float(math.prod(scores))
    raise ValueError(f"unknown aggregation {how!r}; choose last, min or product")


def split_steps(text: str) -> list[str]:
    """A solution's steps: its non-empty lines, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


class Verifier(abc.ABC):
    """Scores candidates. `spec` is the string that names it (`arith`, `judge:local`, …)."""

    spec: str = ""

    @abc.abstractmethod
    def verify(
        self, graph: Graph, question: str, steps: Steps, *, after: Sequence[NodeId] = (), label: str = "verify"
    ) -> NodeId:
        """Add the nodes that score `steps` (an answer to `question`); return the node whose
        output is the `Verdict`. `after` are the nodes a callable `steps` reads."""


def resolve(steps: Steps, ctx: Ctx) -> list[str]:
    """The candidate's steps, read at run time where they come from other nodes."""
    found = steps(ctx) if callable(steps) else steps
    if isinstance(found, str):
        raise TypeError("a candidate's steps must be a list of lines, not one string (use split_steps)")
    return [str(s) for s in found]
