"""mcts and particle-filter where users meet them: behind `reasoner serve` (the gateway, through the
official OpenAI SDK) and in `reasoner chat` (two turns, so the second carries the conversation),
on the simulated step model without slips, so every right run ends at the gold answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chat_support import prompts_over_turns
from serve_support import client, gateway

from reasoner.data import load_gsm8k
from reasoner.serve import BackgroundGateway
from reasoner.simulators.steps import StepSimulator
from reasoner.testing.fake_openai import FakeOpenAIServer

POOL = load_gsm8k("test")[:12]
SIM = StepSimulator(POOL, arith_rate=0.0, logic_rate=0.0, seed=0)
PROBLEMS = [p for p in POOL if SIM.usable(p.question)][:2]
STRATEGIES = {"mcts": {"iterations": 6, "children": 2}, "particle-filter": {"particles": 3}}

pytestmark = pytest.mark.server(responder=SIM.respond)


@pytest.fixture(scope="module")
def gw(server: FakeOpenAIServer) -> Iterator[BackgroundGateway]:
    with gateway(server) as running:
        yield running


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_behind_the_gateway(gw: BackgroundGateway, server: FakeOpenAIServer, name: str) -> None:
    options = ",".join(f"{k}={v}" for k, v in STRATEGIES[name].items())
    problem = PROBLEMS[0]
    server.reset()
    reply = client(gw).chat.completions.create(model=f"{name}:{options}/fake-model", messages=[{"role": "user", "content": problem.question}])
    extra = reply.model_extra["reasoner"]  # type: ignore[index]
    assert extra["strategy"] == name and extra["answer"] == problem.gold
    assert reply.choices[0].message.content and problem.gold in reply.choices[0].message.content
    assert reply.usage.model_extra["calls"] == len(server.completion_requests()) > 1  # type: ignore[union-attr]


@pytest.mark.parametrize("name", list(STRATEGIES))
async def test_in_chat_over_two_turns(server: FakeOpenAIServer, name: str) -> None:
    # The second turn's question came with the first turn in its prompts, and was still answered.
    prompts = await prompts_over_turns(server, name, PROBLEMS, STRATEGIES[name])
    assert prompts and all(PROBLEMS[0].question in p and PROBLEMS[1].question in p for p in prompts)
