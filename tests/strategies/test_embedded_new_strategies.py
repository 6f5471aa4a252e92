"""The strategies added with the search frontier and flowchart reasoning, each on the real embedded
SmolLM2 in process (llama.cpp, batched `n`): each runs to an answer or "no answer", never an error,
on real tokens. mcts and particle-filter have their own embedded tests beside their other tests."""

from __future__ import annotations

from typing import Any

import pytest

from reasoner.strategy import get_strategy

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
# Small, so the module stays within a minute or two on 2 cores.
SMALL: dict[str, dict[str, Any]] = {
    "refine": {"rounds": 1, "critique_max_tokens": 24, "max_tokens": 48},
    "aggregate": {"candidates": 2, "max_tokens": 48},
    "mixture": {"samples": 2, "max_tokens": 48},
    "flowchart": {"chart_max_tokens": 96, "step_max_tokens": 16, "max_steps": 4, "max_tokens": 48},
}


@pytest.mark.parametrize("name", sorted(SMALL))
async def test_runs_to_an_answer_or_no_answer_on_real_tokens(local_backend, name: str) -> None:  # type: ignore[no-untyped-def]
    solution = await get_strategy(name, seed=0, **SMALL[name]).solve(QUESTION, local_backend)
    assert solution.error is None, solution.error
    assert solution.answer is None or solution.answer.lstrip("-").replace(".", "", 1).isdigit()
    models = [n for n in solution.trace["nodes"] if n["kind"] == "model" and n["status"] == "done"]
    assert models and all(n["completion_tokens"] > 0 for n in models)
    assert solution.usage.completion_tokens >= sum(n["completion_tokens"] for n in models)
