"""Self-refine on the simulated step model with a critic of known skill: the loop stops once the
feedback accepts, a revision keeps the steps before the named one, and refining beats its own
first pass; the critique reader; composition under self-consistency."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from critique_support import Critic, backend, kinds
from reasoner.answers import is_correct
from reasoner.simulators.critique import CRITIQUE, REVISE
from reasoner.strategies.common import templates
from reasoner.strategies.refine import read_critique
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer

CRITIC = Critic(critique_accuracy=0.8, revise_rate=0.8)
pytestmark = pytest.mark.server(responder=CRITIC.respond)


def test_a_critique_is_read_as_a_located_error_a_rejection_or_an_acceptance() -> None:
    located = read_critique("Step 2 is wrong: 9 * 2 is 18.", steps=3)
    assert (located.accepted, located.step, located.text) == (False, 1, "Step 2 is wrong: 9 * 2 is 18.")
    assert read_critique("step 7 is incorrect", steps=3).step is None  # no such step: the whole is revised
    assert read_critique("The second line has a mistake.", steps=3).model_dump(include={"accepted", "step"}) == {"accepted": False, "step": None}
    assert read_critique("All steps are correct.", steps=3).accepted
    unreadable = read_critique("", steps=3)
    assert not unreadable.accepted and unreadable.step is None


def test_the_templates_carry_the_phrases_the_simulated_critic_knows() -> None:
    assert CRITIQUE in templates.render("refine/critique.j2", question="Q", steps=["a = 1"])
    assert REVISE in templates.render("refine/revise.j2", question="Q", steps=["a = 1"], feedback="Step 1 is wrong.")


def test_options_are_checked_and_none_means_self_critique() -> None:
    assert get_strategy("refine", verifier="none").verifier is None
    assert get_strategy("refine", verifier="arith").verifier == "arith"
    with pytest.raises(ValidationError, match="verifier"):
        get_strategy("refine", verifier="oracle")
    with pytest.raises(ValidationError, match="rounds"):
        get_strategy("refine", rounds=-1)


async def test_it_stops_once_accepted_and_a_revision_keeps_the_steps_before_the_named_one() -> None:
    critic = Critic(critique_accuracy=1.0, revise_rate=1.0)
    problems = critic.problems(12)
    with FakeOpenAIServer(responder=critic.respond) as server:
        model = backend(server.base_url)
        revised = 0
        try:
            for i, p in enumerate(problems):
                server.reset()
                solution = await get_strategy("refine", rounds=3, seed=i).solve(p.question, model)
                assert solution.error is None, solution.error
                rounds, sent = solution.details["rounds"], server.completion_requests()
                accepted = [r["accepted"] for r in rounds]
                # The loop ends at the first acceptance; without one it ran out of rounds.
                assert accepted.count(True) <= 1 and (accepted[-1] or len(rounds) == 3)
                assert kinds(sent) == ["solve"] + ["critique", "revise"] * (len(rounds) - accepted[-1]) + ["critique"] * accepted[-1]
                if len(rounds) > 1:
                    revised += 1
                    draft = solution.details["initial_text"].splitlines()
                    first = next(r for r in sent if r.body["messages"][0]["content"].find(REVISE) >= 0)
                    kept = draft[: rounds[0]["step"]]
                    # The reply is begun with them (a server that cannot prefill gets them at the prompt's end).
                    assert first.body["messages"][-1]["content"].endswith("\n" + templates.render("steps/partial.j2", steps=kept))
                    assert rounds[0]["changed"] and not rounds[0]["accepted"]
                # A perfect critic accepts only a right solution.
                assert accepted[-1] == is_correct(solution.answer, p.gold)
        finally:
            await model.aclose()
    assert revised >= 3  # the slips left enough first drafts wrong to revise


@pytest.mark.parametrize("verifier", ["none", "arith"])
async def test_refining_beats_its_own_first_pass_on_the_simulated_model(server: FakeOpenAIServer, verifier: str) -> None:
    model = backend(server.base_url)
    first = refined = 0
    problems = CRITIC.problems(32)
    try:
        for i, p in enumerate(problems):
            solution = await get_strategy("refine", verifier=verifier, seed=i).solve(p.question, model)
            assert solution.error is None, solution.error
            first += is_correct(solution.details["initial_answer"], p.gold)
            refined += is_correct(solution.answer, p.gold)
    finally:
        await model.aclose()
    # ~40% of first drafts slip; an 80%-right critic and an 80%-willing reviser recover most.
    assert first <= len(problems) - 8 and refined >= first + 4


async def test_under_self_consistency_the_drafts_go_as_one_request(server: FakeOpenAIServer) -> None:
    model = backend(server.base_url)
    server.reset()
    try:
        solution = await get_strategy("self-consistency", samples=3, inner="refine", seed=1).solve(CRITIC.problems(1)[0].question, model)
    finally:
        await model.aclose()
    assert solution.error is None and solution.answer is not None
    sent = server.completion_requests()
    assert kinds(sent)[0] == "solve" and sent[0].body["n"] == 3 and kinds(sent).count("solve") == 1
