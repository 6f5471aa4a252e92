"""The step-level simulated model: gold steps, slips of both kinds, continuation from a prefix."""

from __future__ import annotations

import random

import pytest

from reasoner.backends.http import OpenAIBackend
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.simulators.steps import StepSimulator
from reasoner.tools.arith_check import check_steps
from reasoner.types import GenerationRequest, Message

JANET = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes with four. She sells the rest for $2 each. How much does she make?",
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day at the market.\n#### 18",
)


def test_gold_solution_as_steps() -> None:
    sim = StepSimulator([JANET], arith_rate=0, logic_rate=0, paraphrase=0)
    steps = sim.continue_from(sim.problems[JANET[0]], [], random.Random(0))
    assert steps == ["Janet sells 16 - 3 - 4 = 9 duck eggs a day.", "She makes 9 * 2 = 18 every day at the market.", "The answer is 18."]
    assert sim.first_error(JANET[0], steps) is None and sim.usable(JANET[0])


def test_an_arithmetic_slip_is_carried_on_and_the_checker_sees_it() -> None:
    sim = StepSimulator([JANET], arith_rate=1.0, logic_rate=0)
    steps = sim.continue_from(sim.problems[JANET[0]], [], random.Random(3))
    assert sim.first_error(JANET[0], steps) == (0, "arith")
    stated = int(steps[0].split("= ")[1].split()[0])
    assert stated != 9 and f"{stated} * 2" in steps[1]  # the wrong value goes on
    assert steps[-1] == f"The answer is {steps[1].split('= ')[1].split()[0]}."  # the last stated value
    assert check_steps(steps).first_error == 0


def test_a_logic_slip_is_sound_arithmetic() -> None:
    sim = StepSimulator([JANET], arith_rate=0, logic_rate=1.0)
    steps = sim.continue_from(sim.problems[JANET[0]], [], random.Random(1))
    assert sim.first_error(JANET[0], steps) == (0, "logic")
    assert check_steps(steps).first_error is None  # the checker cannot see it
    assert steps[0].split("= ")[1].split()[0] != "9"  # a wrong setup gives another value
    assert steps[-1] == f"The answer is {steps[1].split('= ')[1].split()[0]}."


def test_a_right_step_is_written_more_than_one_way() -> None:
    sim = StepSimulator([JANET], arith_rate=0, logic_rate=0, paraphrase=1.0)
    problem = sim.problems[JANET[0]]
    firsts = {sim.continue_from(problem, [], random.Random(i))[0] for i in range(20)}
    assert len(firsts) > 1 and all(s.endswith("16 - 3 - 4 = 9 duck eggs a day.") for s in firsts)
    rest = sim.continue_from(problem, ["Then Janet sells 16 - 3 - 4 = 9 duck eggs a day."], random.Random(0))
    assert len(rest) == 2 and rest[-1] == "The answer is 18."  # a paraphrased prefix is still read


def test_it_continues_from_a_given_prefix() -> None:
    sim = StepSimulator([JANET], arith_rate=0, logic_rate=0, paraphrase=0)
    rest = sim.continue_from(sim.problems[JANET[0]], ["Janet sells 16 - 3 - 4 = 10 duck eggs a day."], random.Random(0))
    assert rest == ["She makes 10 * 2 = 20 every day at the market.", "The answer is 20."]
    assert sim.errors(JANET[0], ["Janet sells 16 - 3 - 4 = 10 duck eggs a day.", *rest]) == ["arith", None, None]
    assert sim.first_error(JANET[0], ["Janet sells 16 - 3 - 4 = 9 duck eggs a day."]) == (1, "logic")  # stopped early


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="arith_rate must lie in"):
        StepSimulator([JANET], arith_rate=1.5)
    with pytest.raises(ValueError, match="at most 1"):
        StepSimulator([JANET], arith_rate=0.6, logic_rate=0.6)


async def test_served_over_http_it_reads_the_prefix_and_judges() -> None:
    sim = StepSimulator([JANET], arith_rate=0, logic_rate=0, judge_accuracy=1.0, paraphrase=0)
    with FakeOpenAIServer(responder=sim.respond) as server:
        backend = OpenAIBackend(server.base_url, "fake-model")
        try:
            user = Message(role="user", content=f"Q: {JANET[0]}")
            prefill = Message(role="assistant", content="A: Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n")
            step = await backend.generate(GenerationRequest(messages=(user, prefill), stop=("\n",), seed=1))
            assert step.text == "She makes 9 * 2 = 18 every day at the market."
            judge = f"Question: {JANET[0]}\n\nStep 1: Janet sells 16 - 3 - 4 = 8 duck eggs a day.\n\nIs the last step correct?"
            verdict = await backend.generate(GenerationRequest(prompt=judge))
            assert verdict.text == "No"
        finally:
            await backend.aclose()
    with pytest.raises(ValueError, match="knows no question"):
        sim.respond({"prompt": "What is 2 + 2?"}, 0)
