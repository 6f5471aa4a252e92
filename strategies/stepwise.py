"""What the verifier-guided strategies share: step prompts and the verifier option.

A partial solution is a tuple of steps (lines). The model is shown worked exemplars and the
question, and its reply is begun with the steps so far, so it writes the next step (`stop` at the
line's end) or the rest of the solution.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from typing import TypeVar

from pydantic import Field

from reasoner.answers import extract_answer
from reasoner.graph import reason
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer, GenerationRequest
from reasoner.verifiers import Aggregation, Verdict, Verifier, VerifierSpec, split_steps
from reasoner.strategies.common import gsm8k_exemplars, templates

Steps = tuple[str, ...]
END_OF_SOLUTION = ("\nQ:", "\n\n")
_FINAL = re.compile(r"\banswer\s*(?:is\b|:)|####|\\boxed", re.IGNORECASE)


def gives_answer(line: str) -> bool:
    """Whether a reasoning line states the final answer (a marker followed by a number)."""
    return _FINAL.search(line) is not None and extract_answer(line) is not None


def verifier_field(default: str = "arith") -> object:
    return Field(default, description="verifier spec: arith, judge, judge:MODEL_SPEC, prm:URL[;model=M][;step_tag=T], classifier or classifier:PATH")


def aggregate_field(default: str = "min") -> object:
    return Field(default, description="step scores as one: min (weakest step), product, or last (latest step)")


class StepSearch(Strategy):
    """The options of a search over steps scored by a verifier (beam search, particle filter, MCTS)."""

    k: int = Field(4, ge=0, le=8, description="number of exemplars (GSM8K train problems shipped with the package)")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    max_tokens: int = Field(96, ge=1, description="tokens per step")
    verifier: VerifierSpec = verifier_field()
    aggregate: Aggregation = aggregate_field()


T = TypeVar("T")


async def judged(run: Run, strategy: Strategy, question: str, verifier: Verifier) -> tuple[Answer, Verdict]:
    """`strategy`'s answer to `question` and `verifier`'s verdict on its lines."""
    answer = await run.solve(strategy, question)
    return answer, await run.verify(verifier, question, split_steps(answer.text))


def succeeded(results: Sequence[T | Exception], what: str) -> list[T]:
    """The results of a tolerant `run.gather` that succeeded, in order; when none did, an error
    naming the first failure, so the run reports why rather than answering from nothing."""
    kept = [r for r in results if not isinstance(r, Exception)]
    if not kept:
        first = next(r for r in results if isinstance(r, Exception))
        raise RuntimeError(f"every {what} or its verification failed; first: {reason(first)}") from first
    return kept  # type: ignore[return-value]


def step_request(
    options: Strategy, question: str, steps: Sequence[str], *, k: int, n: int = 1, temperature: float | None = None,
    whole: bool = False, seed_offset: int = 0,
) -> GenerationRequest:
    """Ask for the next step after `steps` (one line) or, `whole`, the rest of the solution."""
    user = templates.render("steps/solve.j2", exemplars=gsm8k_exemplars()[:k], question=question)
    prefill = templates.render("steps/partial.j2", steps=steps)
    overrides: dict[str, object] = {"n": n, "stop": END_OF_SOLUTION if whole else ("\n",)}
    if temperature is not None:
        overrides["temperature"] = temperature
    if options.seed is not None:
        overrides["seed"] = options.seed + seed_offset
    if not whole:
        overrides["max_tokens"] = min(options.max_tokens, 128)
    return options.turn(user, prefill, **overrides)


def step_of(text: str) -> str:
    """A sampled step: its first line, without an "A:" a model not shown the prefill may write."""
    return re.sub(r"^\s*A:", "", text.strip()).strip().split("\n")[0].strip()


def lines_of(text: str) -> list[str]:
    """The steps of a continuation, up to the line that gives the answer."""
    out: list[str] = []
    for line in re.sub(r"^\s*A:", "", text.strip()).splitlines():
        if line.strip():
            out.append(line.strip())
            if gives_answer(line):
                break
    return out


def finished(steps: Sequence[str]) -> bool:
    return bool(steps) and gives_answer(steps[-1])
