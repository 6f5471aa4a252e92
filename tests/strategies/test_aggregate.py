"""Graph-of-thoughts aggregation on the simulated step model with a merger of known skill: the k
candidates go as one request with n, several merges as another and the verifier keeps the best;
a merger that picks the consistent candidate beats one that picks at random."""

from __future__ import annotations

import pytest

from critique_support import Critic, backend, kinds
from reasoner.answers import is_correct
from reasoner.simulators.critique import MERGE
from reasoner.strategies.common import templates
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer

CRITIC = Critic(merge_accuracy=0.9)
pytestmark = pytest.mark.server(responder=CRITIC.respond)


def test_the_merge_and_synthesis_templates_carry_the_phrase_the_simulated_merger_knows() -> None:
    assert MERGE.search(templates.render("aggregate/merge.j2", question="Q", candidates=[["a = 1"], ["a = 2"]]))
    assert MERGE.search(templates.render("mixture/synthesize.j2", question="Q", responses=[["a = 1"]]))


async def test_the_candidates_go_as_one_request_with_n_then_one_merge(server: FakeOpenAIServer) -> None:
    model = backend(server.base_url)
    problem = CRITIC.problems(1)[0]
    server.reset()
    try:
        solution = await get_strategy("aggregate", candidates=5, seed=0).solve(problem.question, model)
    finally:
        await model.aclose()
    assert solution.error is None, solution.error
    sent = server.completion_requests()
    assert kinds(sent) == ["solve", "merge"]
    assert [r.body["n"] for r in sent] == [5, 1] and sent[1].body["temperature"] == 0.0
    assert len(solution.details["candidate_answers"]) == 5 and solution.answer == solution.details["merged_answers"][0]
    # Each candidate is shown to the merger.
    shown = sent[1].body["messages"][0]["content"]
    assert all(f"Solution {i}:" in shown for i in range(1, 6)) and solution.usage.calls == 2


async def test_several_merges_are_one_request_and_the_verifier_keeps_the_best(server: FakeOpenAIServer) -> None:
    model = backend(server.base_url)
    server.reset()
    try:
        solutions = [
            await get_strategy("aggregate", candidates=4, merges=3, verifier="arith", seed=i).solve(p.question, model)
            for i, p in enumerate(CRITIC.problems(10))
        ]
    finally:
        await model.aclose()
    sent = server.completion_requests()
    assert kinds(sent) == ["solve", "merge"] * 10 and [r.body["n"] for r in sent] == [4, 3] * 10
    for solution in solutions:
        scores = solution.details["scores"]
        assert len(scores) == 3 and solution.details["score"] == max(scores) == scores[solution.details["chosen"]]
        assert solution.answer == solution.details["merged_answers"][solution.details["chosen"]]
    assert any(len(set(s.details["scores"])) > 1 for s in solutions)  # the verifier had a choice to make


async def test_a_merger_that_picks_the_consistent_candidate_beats_one_that_picks_at_random() -> None:
    right: dict[float, int] = {}
    single = 0
    for q in (1.0, 0.0):
        critic = Critic(merge_accuracy=q)
        problems = critic.problems(30)
        with FakeOpenAIServer(responder=critic.respond) as server:
            model = backend(server.base_url)
            try:
                right[q] = 0
                for i, p in enumerate(problems):
                    solution = await get_strategy("aggregate", candidates=5, seed=i).solve(p.question, model)
                    right[q] += is_correct(solution.answer, p.gold)
                    if q == 0.0:  # the first candidate alone: one sample's accuracy
                        single += is_correct(solution.details["candidate_answers"][0], p.gold)
            finally:
                await model.aclose()
    # Copying a random candidate is as good as one sample; the majority's is better.
    assert right[1.0] >= right[0.0] + 4 and abs(right[0.0] - single) <= 4


async def test_composes_its_candidates_drawn_by_refine(server: FakeOpenAIServer) -> None:
    model = backend(server.base_url)
    server.reset()
    try:
        solution = await get_strategy("aggregate", candidates=3, inner="refine", seed=2).solve(CRITIC.problems(2)[1].question, model)
    finally:
        await model.aclose()
    assert solution.error is None and solution.answer is not None
    sent = server.completion_requests()
    assert kinds(sent)[0] == "solve" and sent[0].body["n"] == 3 and kinds(sent)[-1] == "merge"
