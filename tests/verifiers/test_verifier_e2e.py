"""The verifier-guided strategies end to end on the real embedded SmolLM2, and from the CLI.

SmolLM2-135M is weak at math: these check structure (graph, calls, verdicts, a parsed answer or
"no answer"), not accuracy.
"""

from __future__ import annotations

import json

import pytest

from reasoner.answers import extract_answer
from reasoner.strategy import get_strategy

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
# Small enough for two cores: short prompts (k exemplars), few samples, short steps.
SMALL = {
    "best-of-n": {"samples": 2, "max_tokens": 48},
    "diverse": {"prompts": 2, "samples": 2, "k": 1, "pool": "shipped", "max_tokens": 48},
    "beam-search": {"width": 2, "expansions": 2, "depth": 2, "k": 1, "max_tokens": 24},
    "backtrack": {"retries": 2, "max_backtracks": 1, "k": 1, "max_tokens": 48},
}


@pytest.mark.parametrize("name", sorted(SMALL))
async def test_each_verifier_strategy_runs_on_the_embedded_model(local_backend, name: str) -> None:
    solution = await get_strategy(name, seed=1, **SMALL[name]).solve(QUESTION, local_backend)
    assert solution.error is None, solution.error
    assert solution.usage.calls >= 1 and solution.usage.completion_tokens > 0
    labels = [n["label"] for n in solution.trace["nodes"]]
    verify = [n for n in solution.trace["nodes"] if n["label"].startswith("verify") and n["kind"] == "tool"]
    assert verify and all(n["status"] == "done" and "scores" in n["output"] for n in verify), labels
    assert solution.answer is None or extract_answer(solution.answer) == solution.answer


async def test_the_judge_on_the_embedded_model_scores_every_step(local_backend) -> None:
    strategy = get_strategy("best-of-n", samples=2, max_tokens=32, verifier="judge", seed=2)
    solution = await strategy.solve(QUESTION, local_backend)
    assert solution.error is None, solution.error
    judged = [n for n in solution.trace["nodes"] if n["kind"] == "model" and ".judge" in n["label"]]
    assert judged and all(n["request"]["max_tokens"] == 4 for n in judged)
    assert all(0.0 <= s <= 1.0 for s in solution.details["scores"])


def test_reasoner_solve_takes_the_verifier_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from reasoner.cli.main import main

    code = main(["solve", QUESTION, "-s", "best-of-n", "--samples", "2", "--max-tokens", "48", "--verifier", "arith", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == "best-of-n" and out["details"]["verifier"] == "arith"


def test_a_bad_verifier_flag_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from reasoner.cli.main import main

    code = main(["solve", QUESTION, "-s", "backtrack", "--verifier", "oracle"])
    assert code != 0
    assert "unknown verifier 'oracle'" in capsys.readouterr().err
