"""flowchart where users meet it and as a part of other strategies: behind `reasoner serve` (the
gateway, through the official OpenAI SDK) in both forms, in `reasoner chat` over two turns, and
under best-of-n / verifier-weighted self-consistency with the `arith` verifier, which reads the
executed steps (one line each) and so tells a chart that ran from a fallback with a slip."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from chat_support import prompts_over_turns
from serve_support import client, gateway

from reasoner.data import load_gsm8k
from reasoner.serve import BackgroundGateway
from reasoner.simulators.charts import ChartSimulator
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.testing.scripted import ScriptedBackend
from reasoner.verdict import split_steps

POOL = load_gsm8k("test")[:12]
RIGHT = {"wrong_branch_rate": 0, "off_by_one_rate": 0, "malformed_rate": 0, "ask_slip_rate": 0, "helper_rate": 0,
         "arith_rate": 0, "logic_rate": 0}
PROBLEMS = [p for p in POOL if ChartSimulator(POOL).usable(p.question)][:2]
SIM = ChartSimulator(PROBLEMS, **RIGHT)

pytestmark = pytest.mark.server(responder=SIM.respond)


@pytest.fixture(scope="module")
def gw(server: FakeOpenAIServer) -> Iterator[BackgroundGateway]:
    with gateway(server) as running:
        yield running


@pytest.mark.parametrize("model", ["flowchart/fake-model", "flowchart:form=program/fake-model"])
def test_behind_the_gateway(gw: BackgroundGateway, server: FakeOpenAIServer, model: str) -> None:
    problem = PROBLEMS[0]
    server.reset()
    reply = client(gw).chat.completions.create(model=model, messages=[{"role": "user", "content": problem.question}])
    extra = reply.model_extra["reasoner"]  # type: ignore[index]
    assert extra["strategy"] == "flowchart" and extra["answer"] == problem.gold
    content = reply.choices[0].message.content or ""
    assert content.endswith(f"The answer is {problem.gold}.") and len(content.splitlines()) > 2  # the steps, then the answer
    prompts = [json.dumps(r.body) for r in server.completion_requests()]
    wanted = "Write the problem as a flowchart" if "program" not in model else "Write the problem as a short Python function"
    assert sum(wanted in p for p in prompts) == 1 and sum("Sub-question:" in p for p in prompts) >= 2
    assert reply.usage.model_extra["calls"] == len(prompts)  # type: ignore[union-attr]


async def test_in_chat_over_two_turns(server: FakeOpenAIServer) -> None:
    # The second turn's chart and sub-questions came with the first turn in their prompts.
    prompts = await prompts_over_turns(server, "flowchart", PROBLEMS, {})
    assert any("Write the problem as a flowchart" in p for p in prompts)
    assert prompts and all(PROBLEMS[0].question in p and PROBLEMS[1].question in p for p in prompts)


QUESTION = "A colony has 3 bacteria and doubles every week. How many bacteria are there after 5 weeks?"
CHART = json.dumps({"nodes": [
    {"id": "start", "kind": "ask", "question": "How many bacteria at the start?", "store": "count", "next": "weeks"},
    {"id": "weeks", "kind": "loop", "times": "5", "body": "double", "next": "done"},
    {"id": "double", "kind": "compute", "expr": "count * 2", "store": "count", "next": "weeks"},
    {"id": "done", "kind": "answer", "expr": "count"}]})
SLIP = " 3 doubled 5 times is 3 * 32 = 95.\nThe answer is 95."  # the fallback's chain of thought, miscalculated


def scripted() -> ScriptedBackend:
    # Two samples: one chart is cut off (so that sample falls back to the slipped CoT), one runs.
    return ScriptedBackend([(r"Write the problem as a flowchart", [CHART[:40], CHART]),
                            (r"Sub-question: How many bacteria", "The answer is 3."), (r"A:$", SLIP)])


def test_the_steps_are_lines_a_verifier_reads() -> None:
    solution = asyncio.run(get_strategy("best-of-n", inner="flowchart", verifier="arith", samples=2).solve(QUESTION, scripted()))
    assert solution.error is None and solution.answer == "96"
    assert sorted(solution.details["scores"]) == [0.0, 1.0] and sorted(solution.details["answers"]) == ["95", "96"]
    verdicts = [n["output"] for n in solution.trace["nodes"] if n["kind"] == "verifier" or n["label"].startswith("verify")]
    ran = next(v for v in verdicts if v["scores"] and min(v["scores"]) == 1.0)
    # The chart's verdict is over its executed steps, a line each: the ask, then each round's compute.
    assert ran["steps"][:3] == ["How many bacteria at the start? 3", "count = (3) * 2 = 6", "count = (6) * 2 = 12"]
    assert ran["steps"] == split_steps(solution.text) and len(ran["steps"]) == 7


def test_self_consistency_weighted_by_the_verifier_outvotes_the_slip() -> None:
    strategy = get_strategy("self-consistency", inner="flowchart", weighting="verifier", verifier="arith", samples=2)
    solution = asyncio.run(strategy.solve(QUESTION, scripted()))
    assert solution.answer == "96" and solution.details["weights"] == {"96": 1.0, "95": 0.0}
