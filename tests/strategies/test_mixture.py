"""Mixture of agents on simulated step models of known strength: one model's samples as one
request with n; several models each asked (through a tool node per other model), their costs
counted per model and summing to the solution's; a strong proposer lifts a weak one's mixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from critique_support import Critic, backend, kinds
from reasoner.answers import is_correct
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer

WEAK = Critic(arith_rate=0.15, logic_rate=0.1, merge_accuracy=1.0)
STRONG = Critic(arith_rate=0.0, logic_rate=0.0, merge_accuracy=1.0)
pytestmark = pytest.mark.server(responder=WEAK.respond)


@pytest.fixture(scope="module")
def strong() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=STRONG.respond) as server:
        yield server


def test_model_specs_are_checked_and_split_on_semicolons() -> None:
    mixture = get_strategy("mixture", models="self; http://127.0.0.1:9/v1", aggregator="http://127.0.0.1:9/v1")
    assert mixture.models == ["self", "http://127.0.0.1:9/v1"]
    with pytest.raises(ValidationError, match="models"):
        get_strategy("mixture", models="self;gpt4")
    with pytest.raises(ValidationError, match="aggregator"):
        get_strategy("mixture", aggregator="http:")


async def test_one_models_samples_go_as_one_request_then_the_aggregator(server: FakeOpenAIServer) -> None:
    model = backend(server.base_url)
    server.reset()
    try:
        solution = await get_strategy("mixture", samples=4, seed=0).solve(WEAK.problems(1)[0].question, model)
    finally:
        await model.aclose()
    assert solution.error is None, solution.error
    sent = server.completion_requests()
    assert kinds(sent) == ["solve", "merge"] and [r.body["n"] for r in sent] == [4, 1]
    cost = solution.details["costs"]["self"]
    assert cost["calls"] == 2 and cost["prompt_tokens"] == solution.usage.prompt_tokens and cost["completion_tokens"] == solution.usage.completion_tokens
    assert len(solution.details["proposals"]) == 4


async def test_each_model_is_asked_and_its_costs_are_counted_apart(server: FakeOpenAIServer, strong: FakeOpenAIServer) -> None:
    model = backend(server.base_url)
    server.reset()
    strong.reset()
    other = strong.base_url
    try:
        solution = await get_strategy("mixture", models=f"self;{other}", samples=2, aggregator=other, seed=0).solve(
            WEAK.problems(1)[0].question, model
        )
    finally:
        await model.aclose()
    assert solution.error is None, solution.error
    mine, theirs = server.completion_requests(), strong.completion_requests()
    assert kinds(mine) == ["solve"] and kinds(theirs) == ["solve", "merge"] and theirs[0].body["n"] == 2
    costs = solution.details["costs"]
    assert costs["self"]["calls"] == 1 and costs[other]["calls"] == 2
    for field in ("prompt_tokens", "completion_tokens", "calls"):
        assert costs["self"][field] + costs[other][field] == getattr(solution.usage, field)
    assert [p["model"] for p in solution.details["proposals"]] == ["self", "self", other, other]
    # The other model's calls are tool nodes of the trace, their requests and tokens on them.
    tools = [n for n in solution.trace["nodes"] if n.get("kind") == "tool"]
    assert len(tools) == 2 and all(n.get("request") and n.get("completion_tokens") for n in tools)


async def test_a_proposer_that_fails_leaves_the_others_to_answer(server: FakeOpenAIServer) -> None:
    model = backend(server.base_url)
    try:
        solution = await get_strategy("mixture", models="self;http://127.0.0.1:9/v1", samples=2, seed=0).solve(WEAK.problems(1)[0].question, model)
    finally:
        await model.aclose()
    assert solution.error is None and solution.answer is not None
    assert {p["model"] for p in solution.details["proposals"]} == {"self"}


async def test_a_strong_proposer_lifts_the_weak_models_mixture(server: FakeOpenAIServer, strong: FakeOpenAIServer) -> None:
    model = backend(server.base_url)
    alone = mixed = 0
    problems = WEAK.problems(20)
    try:
        for i, p in enumerate(problems):
            weak_only = await get_strategy("mixture", samples=3, seed=i).solve(p.question, model)
            both = await get_strategy("mixture", models=f"self;{strong.base_url}", samples=2, seed=i).solve(p.question, model)
            alone += is_correct(weak_only.answer, p.gold)
            mixed += is_correct(both.answer, p.gold)
    finally:
        await model.aclose()
    assert mixed >= alone + 3 and mixed >= len(problems) - 4
