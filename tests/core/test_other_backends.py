"""The other models a strategy or verifier asks (`reasoner.backends.others`): opened once per event
loop however many calls and questions ask them, a failed open tried again, closed when the loop
ends; and over HTTP, a run of several questions connects once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import reasoner.backends.spec as spec_module
from reasoner.backends import others
from reasoner.backends.others import generate_on, other_backend
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import GenerationRequest


class Closing(ScriptedBackend):
    def __init__(self, **options: Any) -> None:
        super().__init__([], default="Yes", **options)
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Closing]]:
    seen: list[tuple[str, Closing]] = []

    async def open_backend(spec: str, **_: Any) -> Closing:
        await asyncio.sleep(0)  # concurrent first calls overlap here
        seen.append((spec, Closing(supports_n=spec != "no-n")))
        if spec == "down":
            raise ConnectionError("refused")
        return seen[-1][1]

    monkeypatch.setattr(spec_module, "open_backend", open_backend)
    return seen


def test_each_spec_is_opened_once_per_loop_and_closed_when_it_ends(opened: list[tuple[str, Closing]]) -> None:
    ask = GenerationRequest(prompt="Is it right?", max_tokens=2)

    async def calls() -> None:
        await asyncio.gather(*(generate_on("a", ask) for _ in range(5)), generate_on("b", ask))
        await generate_on("a", ask)
        assert [s for s, _ in opened] == ["a", "b"] and not any(b.closed for _, b in opened)

    asyncio.run(calls())
    assert all(b.closed for _, b in opened) and len(opened[0][1].requests) == 6
    assert not others._BY_LOOP  # the closed loop is not kept
    asyncio.run(generate_on("a", ask))  # a new loop opens its own
    assert [s for s, _ in opened] == ["a", "b", "a"] and opened[-1][1].closed


def test_a_failed_open_is_tried_again(opened: list[tuple[str, Closing]]) -> None:
    async def twice() -> None:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await other_backend("down")

    asyncio.run(twice())
    assert [s for s, _ in opened] == ["down", "down"]  # both calls tried; neither was kept


def test_n_goes_as_single_requests_where_the_backend_takes_none(opened: list[tuple[str, Closing]]) -> None:
    votes = asyncio.run(generate_on("no-n", GenerationRequest(prompt="Is it right?", n=3, temperature=1.0, seed=7)))
    (_, backend), = opened
    assert len(votes.choices) == 3 and votes.calls == 3
    assert [r.n for r in backend.requests] == [1, 1, 1] and len({r.seed for r in backend.requests}) == 3


async def test_a_mixture_over_several_questions_connects_to_the_other_server_once() -> None:
    from critique_support import Critic, backend

    weak = Critic(arith_rate=0.15, logic_rate=0.1, merge_accuracy=1.0)
    with FakeOpenAIServer(responder=weak.respond) as mine, FakeOpenAIServer(responder=weak.respond) as other:
        model = backend(mine.base_url)
        mixture = get_strategy("mixture", models=f"self;{other.base_url}", samples=2, aggregator=other.base_url, seed=0)
        try:
            for problem in weak.problems(3):
                assert (await mixture.solve(problem.question, model)).error is None
        finally:
            await model.aclose()
        cards = [r for r in other.requests if r.path.endswith("/models")]
        assert len(cards) == 1 and len(other.completion_requests()) == 6
