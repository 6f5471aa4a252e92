"""Step-level beam search and backtracking, on scripted replies and on the simulated step model."""

from __future__ import annotations

import pytest

from reasoner.answers import is_correct
from reasoner.backends.http import OpenAIBackend
from reasoner.data import load_gsm8k
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.testing.scripted import ScriptedBackend
from reasoner.simulators.steps import StepSimulator

QUESTION = "Janet's ducks lay 16 eggs a day; she eats 3, bakes with 4 and sells the rest at $2. How much does she make?"
AFTER_ONE = r"A: She sells 16 - 3 - 4 = 9 eggs\.\n$"


def step_rules(second: list[str]) -> list[tuple[str, list[str]]]:
    return [
        (r"She makes 9 \* 2 = 18 dollars\.\n$", ["The answer is 18."]),
        (r"She makes 9 \* 2 = 19 dollars\.\n$", ["The answer is 19."]),
        (AFTER_ONE, second),
        (r"Q: Janet[^\n]*\nA:$", ["She sells 16 - 3 - 4 = 9 eggs."]),
    ]


async def test_beam_search_prunes_the_slip_and_merges_sibling_expansions() -> None:
    backend = ScriptedBackend(step_rules(["She makes 9 * 2 = 19 dollars.", "She makes 9 * 2 = 18 dollars."]))
    solution = await get_strategy("beam-search", width=2, expansions=2, seed=0).solve(QUESTION, backend)
    assert solution.answer == "18"
    assert solution.text.splitlines() == ["She sells 16 - 3 - 4 = 9 eggs.", "She makes 9 * 2 = 18 dollars.", "The answer is 18."]
    # The two root beams ask the same thing: one request with n=4; every request stops at a line's end.
    assert backend.requests[0].n == 4 and all(r.stop == ("\n",) for r in backend.requests)
    assert solution.details["levels"] == 3
    assert [f["score"] for f in solution.details["finished"]][:1] == [1.0]


async def test_dvts_keeps_one_beam_per_subtree() -> None:
    backend = ScriptedBackend(step_rules(["She makes 9 * 2 = 19 dollars.", "She makes 9 * 2 = 18 dollars."]))
    solution = await get_strategy("beam-search", width=3, expansions=2, dvts=True).solve(QUESTION, backend)
    assert solution.answer == "18" and solution.details["dvts"]
    subtrees = {f["subtree"] for f in solution.details["finished"]}
    assert subtrees == {0, 1, 2}  # each subtree finished once, on its own


async def test_backtrack_resamples_the_first_wrong_step_and_keeps_the_ones_before() -> None:
    backend = ScriptedBackend(
        [
            (r"She makes 9 \* 2 = 18 dollars\.\n$", ["The answer is 18."]),
            # The resampled step: the rejected one again (excluded), then a different one.
            (AFTER_ONE, ["She makes 9 * 2 = 19 dollars.", "She makes 9 * 2 = 18 dollars."]),
            (r"Q: Janet[^\n]*\nA:$", ["She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = 19 dollars.\nThe answer is 19."]),
        ]
    )
    solution = await get_strategy("backtrack", retries=2).solve(QUESTION, backend)
    assert solution.answer == "18" and solution.details["initial_answer"] == "19"
    [fix] = solution.details["backtracks"]
    assert fix["step"] == 1 and fix["rejected"] == "She makes 9 * 2 = 19 dollars." and fix["chosen"].endswith("= 18 dollars.")
    assert fix["why"] == "9 * 2 = 19, but 9 * 2 is 18"
    resample = backend.requests[1]
    assert resample.n == 2 and resample.temperature == 1.0 and resample.prefill.endswith("= 9 eggs.\n")
    assert solution.details["rounds"] == 1 and solution.details["first_error"] is None


async def test_backtrack_gives_up_after_max_backtracks() -> None:
    backend = ScriptedBackend(
        [
            (AFTER_ONE, ["She makes 9 * 2 = 17 dollars.", "She makes 9 * 2 = 16 dollars."]),
            (r"dollars\.\n$", ["The answer is 0."]),
            (r"Q: Janet[^\n]*\nA:$", ["She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = 19 dollars.\nThe answer is 19."]),
        ]
    )
    solution = await get_strategy("backtrack", retries=2, max_backtracks=2).solve(QUESTION, backend)
    assert len(solution.details["backtracks"]) == 2 and solution.details["first_error"] == 1


@pytest.fixture(scope="module")
def sim_server() -> object:
    problems = [p for p in load_gsm8k("test")[:40]]
    sim = StepSimulator(problems, arith_rate=0.15, logic_rate=0.0, seed=7)
    problems = [p for p in problems if sim.usable(p.question)][:15]
    with FakeOpenAIServer(responder=sim.respond) as server:
        yield server, problems


@pytest.mark.parametrize("name, options", [("backtrack", {}), ("beam-search", {"width": 2, "expansions": 2})])
async def test_on_the_simulated_model_arithmetic_slips_get_fixed(sim_server, name: str, options: dict) -> None:  # type: ignore[no-untyped-def]
    server, problems = sim_server
    backend = OpenAIBackend(server.base_url, "fake-model")
    try:
        baseline = verified = 0
        for i, p in enumerate(problems):
            plain = await get_strategy("few-shot-cot", temperature=0.7, seed=i).solve(p.question, backend)
            solution = await get_strategy(name, seed=i, **options).solve(p.question, backend)
            assert solution.error is None, solution.error
            baseline += is_correct(plain.answer, p.gold)
            verified += is_correct(solution.answer, p.gold)
    finally:
        await backend.aclose()
    # With only arithmetic slips and the arithmetic checker, nearly every question comes out right.
    assert verified >= len(problems) - 1 and verified > baseline


async def test_beam_search_weighted_final_outvotes_an_error_the_verifier_cannot_see() -> None:
    rules = [
        (r"9 \+ 2 = 11 dollars\.\n$", ["The answer is 11."]),
        (r"9 \* 2 = 18 dollars\.\n$", ["The answer is 18."]),
        (AFTER_ONE, ["She makes 9 + 2 = 11 dollars.", "She makes 9 * 2 = 18 dollars.", "So she makes 9 * 2 = 18 dollars."]),
        (r"Q: Janet[^\n]*\nA:$", ["She sells 16 - 3 - 4 = 9 eggs."]),
    ]
    # 9 + 2 = 11 is a wrong setup with sound arithmetic: the checker passes it, first in sampling order.
    best = await get_strategy("beam-search", width=3, expansions=3, final="best").solve(QUESTION, ScriptedBackend(rules))
    weighted = await get_strategy("beam-search", width=3, expansions=3).solve(QUESTION, ScriptedBackend(rules))
    assert best.answer == "11"
    assert weighted.answer == "18" and weighted.details["totals"] == {"11": 1.0, "18": 2.0}
