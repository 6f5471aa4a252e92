"""Least-to-most: the decompose → solve chain, what each step sees, the fallback, the CLI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from reasoner.cli.main import main
from reasoner.testing.scripted import ScriptedBackend
from reasoner.engine import Engine
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.graph import Graph
from reasoner.types import GenerationRequest
from reasoner.strategies.least_to_most import (
    LeastToMost,
    asked,
    continued,
    ends_with_question,
    exemplars,
    parse_subquestions,
    reply,
)

QUESTION = "Elsa has 5 apples. Anna has 2 more apples than Elsa. How many apples do they have together?"
DECOMPOSE = "Break each problem down"
SOLVE = "Answer the sub-questions"
FEW_SHOT = r"\AQ: "  # the fallback's few-shot-cot prompt starts with its first exemplar

ANSWERS = {
    "How many apples does Anna have?": " Anna has 5 + 2 = 7 apples. The answer is 7.",
    "How many apples does Elsa have?": " Elsa has 5 apples. The answer is 5.",
    "How many apples do they have together?": " They have 5 + 7 = 12 apples. The answer is 12.",
}


def current(request: GenerationRequest) -> str:
    """The sub-question a solve request asks: the last line of its user turn."""
    assert request.messages is not None
    return request.messages[0].content.splitlines()[-1].removeprefix("Q: ")


def solve_reply(request: GenerationRequest, _i: int) -> str:
    return ANSWERS[current(request)]


def backend(decomposition: str, fallback: str = " 5 + 7 = 12. The answer is 12.") -> ScriptedBackend:
    return ScriptedBackend([(DECOMPOSE, decomposition), (SOLVE, solve_reply), (FEW_SHOT, fallback)])


def edges(trace: dict[str, Any]) -> set[tuple[str, str]]:
    """The data dependencies: a node made after another one it read."""
    return {(e["source"], e["target"]) for e in trace["edges"] if not e.get("waited")}


def waited(trace: dict[str, Any]) -> set[tuple[str, str]]:
    """A call and the strategy's node that made it and waited for it."""
    return {(e["source"], e["target"]) for e in trace["edges"] if e.get("waited")}


def reachable(trace: dict[str, Any], source: str, target: str) -> bool:
    """Whether `target` depends on `source`, through any chain of data dependencies."""
    after = edges(trace)
    seen, todo = {source}, [source]
    while todo:
        node = todo.pop()
        for u, v in after:
            if u == node and v not in seen:
                seen.add(v)
                todo.append(v)
    return target in seen


def solve_requests(b: ScriptedBackend) -> list[str]:
    return [r.messages[0].content for r in b.requests if r.messages and SOLVE in r.messages[0].content]


async def test_chain_decompose_then_each_subquestion_in_order() -> None:
    b = backend(" How many apples does Anna have?\n2. How many apples do they have together?")
    solution = await LeastToMost().solve(QUESTION, b)
    assert solution.error is None
    assert solution.answer == "12"
    # Each call follows the one before; the strategy's node waited for every call it made.
    assert {("decompose", "solve1"), ("solve1", "solve2")} <= edges(solution.trace)
    assert {(call, "least-to-most") for call in ("decompose", "solve1", "solve2")} <= waited(solution.trace)
    assert [n["id"] for n in solution.trace["nodes"] if n["kind"] == "model"] == ["decompose", "solve1", "solve2"]
    assert [n["id"] for n in solution.trace["nodes"] if n["kind"] != "model"] == ["least-to-most"]
    assert solution.details["subquestions"] == ["How many apples does Anna have?", "How many apples do they have together?"]
    assert solution.details["subanswers"][0] == ANSWERS["How many apples does Anna have?"].strip()
    assert solution.details["appended_question"] is False
    assert "Q: How many apples does Anna have?\nA: Anna has 5 + 2 = 7 apples." in solution.text
    assert solution.usage.calls == 3


async def test_each_later_prompt_carries_the_earlier_answers() -> None:
    b = backend("  How many apples does Elsa have?\n2. How many apples does Anna have?\n3. How many apples do they have together?")
    solution = await LeastToMost().solve(QUESTION, b)
    first, second, third = solve_requests(b)
    elsa, anna = ANSWERS["How many apples does Elsa have?"].strip(), ANSWERS["How many apples does Anna have?"].strip()
    assert QUESTION in first and elsa not in first
    assert f"Q: How many apples does Elsa have?\nA: {elsa}" in second and anna not in second
    assert elsa in third and f"Q: How many apples does Anna have?\nA: {anna}" in third
    assert third.endswith("Q: How many apples do they have together?")
    # The third step reads both earlier answers, so it depends on both (through the chain of calls).
    assert {("decompose", "solve1"), ("solve1", "solve2"), ("solve2", "solve3")} <= edges(solution.trace)
    assert reachable(solution.trace, "solve1", "solve3") and reachable(solution.trace, "solve2", "solve3")
    assert solution.answer == "12"


async def test_the_original_question_is_appended_when_the_list_stops_short() -> None:
    b = backend(" How many apples does Anna have?")
    solution = await LeastToMost().solve(QUESTION, b)
    assert solution.details["subquestions"] == ["How many apples does Anna have?", "How many apples do they have together?"]
    assert solution.details["appended_question"] is True
    assert len(solve_requests(b)) == 2
    assert solution.answer == "12"


@pytest.mark.parametrize(
    ("decomposition", "reason"),
    [
        ("", "no sub-questions"),
        (" ???\nI cannot split this problem.", "no sub-questions"),
        ("".join(f" Step {i}?\n{i + 1}." for i in range(1, 9)) + " Step 9?", "9 sub-questions, more than max_subquestions=8"),
    ],
)
async def test_a_malformed_decomposition_falls_back_to_few_shot_cot(decomposition: str, reason: str) -> None:
    b = backend(decomposition)
    solution = await LeastToMost().solve(QUESTION, b)
    assert solution.error is None
    assert solution.answer == "12"
    assert solution.details["fallback"] == "few-shot-cot"
    assert reason in solution.details["fallback_reason"]
    assert solution.details["decomposition"].startswith("Sub-questions:\n1.")
    ids = [n["id"] for n in solution.trace["nodes"]]
    assert ids == ["least-to-most", "decompose", "fallback/few-shot-cot", "fallback/reason"]
    assert solve_requests(b) == []
    (few_shot,) = [r.prompt for r in b.requests if r.prompt is not None]
    assert few_shot.count("Q: ") == 4 + 1  # as many exemplars as the plan would have had


async def test_max_subquestions_is_an_option() -> None:
    b = backend(" How many apples does Anna have?\n2. How many apples do they have together?")
    solution = await LeastToMost(max_subquestions=1).solve(QUESTION, b)
    assert "2 sub-questions" in solution.details["fallback_reason"]


async def test_it_composes_inside_a_scope() -> None:
    b = backend(" How many apples does Anna have?\n2. How many apples do they have together?")
    graph = Graph()
    final = LeastToMost().build(graph.scope("l2m"), QUESTION)
    await Engine(b).run(graph)
    assert final == "l2m/least-to-most"
    assert graph.output(final).answer == "12"
    assert all(node.startswith("l2m/") for node in graph.nx.nodes)
    assert {"l2m/decompose", "l2m/solve1", "l2m/solve2"} <= set(graph.nx.nodes)


def test_prompts_show_the_exemplars() -> None:
    b = backend(" How many apples do they have together?")
    asyncio.run(LeastToMost(k=2).solve(QUESTION, b))
    decompose = b.requests[0]
    assert decompose.messages is not None and decompose.messages[-1].role == "assistant"
    user = decompose.messages[0].content
    assert user.count("Sub-questions:") == 2 and user.endswith(f"Q: {QUESTION}")
    assert exemplars()[1].steps[-1].question in user and exemplars()[2].question not in user
    assert len(exemplars()) == 4
    for ex in exemplars():  # every worked decomposition ends with the problem's own question
        assert ends_with_question([s.question for s in ex.steps], ex.question)


def test_parsing_lists() -> None:
    text = "Sub-questions:\n1. How many a?\n2) How many b?\n(3) c?\n- d?\n* e?\n• f?\n4.\n7. 12\nnot a list line"
    assert parse_subquestions(text) == ["How many a?", "How many b?", "c?", "d?", "e?", "f?"]
    assert parse_subquestions("") == []
    assert asked("It costs $2.50 each. How many can he buy with $10? Round down.") == "How many can he buy with $10?"
    assert asked("Compute 3 + 4.") == "Compute 3 + 4."
    assert ends_with_question(["x", "how many apples do they have together"], QUESTION)
    assert not ends_with_question(["How many apples does Anna have?"], QUESTION)
    # The prefill "1." was continued, or the model (not seeing it as its own) began the list anew.
    prefill = "Sub-questions:\n1."
    assert parse_subquestions(continued(prefill, " a?\n2. b?")) == ["a?", "b?"]
    assert parse_subquestions(continued(prefill, "1. a?\n2. b?")) == ["a?", "b?"]
    assert parse_subquestions(continued(prefill, "Sub-questions:\n1. a?")) == ["a?"]
    assert parse_subquestions(continued(prefill, "")) == []
    assert reply(" A: 7. The answer is 7.") == reply("7. The answer is 7.") == "7. The answer is 7."


def test_cli_json_against_the_fake_openai_server(capsys: pytest.CaptureFixture[str]) -> None:
    def responder(body: dict[str, Any], index: int) -> str:
        # A plain chat server cannot continue the assistant's prefill: it ends the user's turn
        # instead, and the model starts its reply afresh.
        (message,) = body["messages"]
        lines = message["content"].splitlines()
        if lines[-1] == "1.":
            return "1. How many apples does Anna have?\n2. How many apples do they have together?"
        assert lines[-1] == "A:"
        return "A:" + ANSWERS[lines[-2].removeprefix("Q: ")]

    with FakeOpenAIServer(responder=responder) as server:
        code = main(["solve", QUESTION, "--strategy", "least-to-most", "--model", server.base_url, "--json"])
        assert len(server.completion_requests()) == 3
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["answer"] == "12" and out["strategy"] == "least-to-most"
    assert out["details"]["subquestions"][0] == "How many apples does Anna have?"
    assert out["details"]["subanswers"][1] == "They have 5 + 7 = 12 apples. The answer is 12."
    assert out["usage"]["calls"] == 3


@pytest.mark.slow
async def test_end_to_end_on_the_embedded_model() -> None:
    from reasoner.backends.local import LlamaCppBackend

    question = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"
    strategy = LeastToMost(k=1, decompose_max_tokens=40, max_tokens=24, max_subquestions=3)
    solution = await strategy.solve(question, LlamaCppBackend())
    assert solution.error is None
    details = solution.details
    if "fallback" in details:
        assert any(n["id"] == "fallback/few-shot-cot" for n in solution.trace["nodes"])
        assert solution.usage.calls == 2
    else:
        assert 1 <= len(details["subquestions"]) <= 4
        assert len(details["subanswers"]) == len(details["subquestions"])
        assert solution.usage.calls == 1 + len(details["subquestions"])
