"""The chart-writing simulated model (`reasoner.simulators.charts`) behind the fake OpenAI server:
charts written right are run to the gold answer in both forms; the chart errors it is set to make
show as wrong answers (a flipped branch, an off-by-one loop) or fallbacks (malformed charts)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reasoner.backends.http import OpenAIBackend
from reasoner.data import Problem, load_gsm8k
from reasoner.simulators.charts import ChartSimulator
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer

QUESTIONS = 8


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    pool = load_gsm8k("test")[:40]
    sim = ChartSimulator(pool)
    return [p for p in pool if sim.usable(p.question)][:QUESTIONS]


def solve_all(problems: list[Problem], form: str, **rates: Any) -> list[Any]:
    sim = ChartSimulator(problems, **{"wrong_branch_rate": 0, "off_by_one_rate": 0, "malformed_rate": 0, "ask_slip_rate": 0,
                                      "arith_rate": 0, "logic_rate": 0, **rates})

    async def run() -> list[Any]:
        with FakeOpenAIServer(responder=sim.respond, record=False) as server:
            backend = OpenAIBackend(server.base_url, "fake-model")
            try:
                return [await get_strategy("flowchart", form=form).solve(p.question, backend) for p in problems]
            finally:
                await backend.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("form", ["graph", "program"])
def test_right_charts_reach_the_gold_answer_through_loops_and_branches(problems: list[Problem], form: str) -> None:
    solutions = solve_all(problems, form, helper_rate=0.5)
    assert [s.answer for s in solutions] == [p.gold for p in problems]
    assert all("fallback" not in s.details for s in solutions)
    if form == "graph":
        assert any("loop" in " ".join(s.details["path"]) for s in solutions)
        assert any(n["label"] == "decide check" for s in solutions for n in s.trace["nodes"])
    else:
        assert any(n["label"].startswith("helper step_") for s in solutions for n in s.trace["nodes"])


def test_flipped_branches_and_off_by_one_loops_give_wrong_answers_not_fallbacks(problems: list[Problem]) -> None:
    right = solve_all(problems, "graph")
    branched = [p for p, s in zip(problems, right) if "check" in s.details["path"]]
    solutions = solve_all(branched, "graph", wrong_branch_rate=1.0)
    assert branched and all(s.answer != p.gold and "fallback" not in s.details for s, p in zip(solutions, branched))
    looped = [p for p, s in zip(problems, right) if "loop" in " ".join(s.details["path"])]
    off = solve_all(looped, "graph", off_by_one_rate=1.0)
    assert looped and all(s.answer != p.gold for s, p in zip(off, looped))


@pytest.mark.parametrize("form", ["graph", "program"])
def test_malformed_charts_all_fall_back_to_the_chain_of_thought(problems: list[Problem], form: str) -> None:
    solutions = solve_all(problems, form, malformed_rate=1.0)
    assert all(s.details.get("fallback") == "few-shot-cot" for s in solutions)
    assert [s.answer for s in solutions] == [p.gold for p in problems]  # the CoT makes no slips here


def test_rates_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match="malformed_rate must lie in"):
        ChartSimulator([], malformed_rate=1.5)
