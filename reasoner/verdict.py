"""What a verifier is: something that scores a candidate solution, whole or step by step.

A step is one line of reasoning. A verifier runs as a node of the strategy's graph (`await
run.verify(verifier, question, steps)`), its own model calls nodes inside it (so they are traced
and counted like any model call), and gives a `Verdict`: one score in
[0, 1] per step (a whole-solution verifier gives one score for the lot), the first step it holds
wrong, and why where it can say. Search strategies reduce the step scores to one number with an
aggregation, as Hugging Face's search-and-learn does: `last` (the score of the latest step, which
for a process reward model already reflects what came before), `min` (a chain is as good as its
weakest step) or `product` (the chance every step is right, if the scores were independent).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, Field

from reasoner.graph import Kind
from reasoner.types import Usage

if TYPE_CHECKING:
    from reasoner.run import Run

Aggregation = Literal["last", "min", "product"]
#: A step scored below this is wrong: where a verifier's first error is.
WRONG_BELOW = 0.5


class Verdict(BaseModel):
    """A verifier's judgement of one candidate."""

    verifier: str
    steps: list[str]
    #: One score per step in [0, 1]; a whole-solution verdict has a single score.
    scores: list[float]
    per_step: bool = True
    #: Why a step was judged wrong, by step index (as text), where the verifier can say.
    notes: dict[str, str] = Field(default_factory=dict)
    #: What scoring cost where it called a server outside the engine (a reward model).
    usage: Usage | None = None

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
    #: How its node is marked in the trace: "tool" for a checker, "function" for one whose model
    #: calls are nodes inside it.
    kind: ClassVar[Kind] = "tool"

    @abc.abstractmethod
    async def verify(self, run: Run, question: str, steps: Sequence[str]) -> Verdict:
        """The verdict on `steps` (an answer to `question`). Called by `run.verify`, inside the
        verifier's node: model calls made through `run` are nodes of the graph."""


def lines(steps: Sequence[str]) -> list[str]:
    """The candidate's steps as a list of lines; one string is refused (it is not steps)."""
    if isinstance(steps, str):
        raise TypeError("a candidate's steps must be a list of lines, not one string (use split_steps)")
    return [str(s) for s in steps]
