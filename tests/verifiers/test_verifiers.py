"""Verifiers: the arithmetic checker, the LLM judge, spec parsing, aggregation, graph nodes."""

from __future__ import annotations

import math

import pytest

from reasoner.engine import Engine
from reasoner.graph import Graph
from reasoner.run import Run
from reasoner.testing.scripted import Rule, ScriptedBackend
from reasoner.tools.arith_check import check_steps, equations
from reasoner.verifiers import Verdict, VerifierSpecError, aggregate, open_verifier, parse_spec, split_steps
from reasoner.verifiers.judge import JudgeVerifier

STEPS = [
    "Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
    "She makes 9 * 2 = $19 every day.",  # a slip: 9 * 2 is 18
    "The answer is 19.",
]


def test_arith_checker_finds_the_slip_and_says_why() -> None:
    verdict = check_steps(STEPS)
    assert verdict.scores == [1.0, 0.0, 1.0]
    assert verdict.first_error == 1
    assert verdict.notes["1"] == "9 * 2 = 19, but 9 * 2 is 18"


@pytest.mark.parametrize(
    "line, wrong",
    [
        ("He has 80,000*1.5 = $120,000 more.", False),
        ("So 100/3 = 33.33 each.", False),  # rounded to the places shown
        ("So 100/3 = 33.4 each.", True),
        ("(3 x 4 = 12)", False),
        ("2 * 3 + 1 = 6 + 1 = 7", False),
        ("5 - 2 = 3 and 3 * 4 = 13", True),
        ("He has 5 apples, 3 + 2 = 6 in all", True),
        ("He scored 4 * .25 = 6 points more", True),  # a decimal without its leading zero
        ("so that's 60 / 4 = 15 4-packs", False),  # the value is the number the right side begins with
        ("so that's 60 / 4 = 16 4-packs", True),
        ("he had 5 - 1 - 1/2 = 3 1/2 hours left", False),  # a mixed number
        ("Yuri scored 1/2 (68) + 10 = 44 points", False),  # an implicit product
        ("she gets: $50,000 * 50% 50000 * 50 * .01 = 25000", False),  # two expressions side by side
    ],
)
def test_arith_checker_reads_equations_as_people_write_them(line: str, wrong: bool) -> None:
    assert equations(line), line
    assert (check_steps([line]).first_error == 0) is wrong


def test_arith_checker_leaves_algebra_alone() -> None:
    assert equations("we subtract 4 from each side, 3x +4 - 4 = 28 - 4") == []


def test_arith_checker_cannot_see_a_wrong_setup() -> None:
    # 16 - 3 = 13 is sound arithmetic for the wrong operation (the question subtracts 4 too).
    assert check_steps(["Janet sells 16 - 3 = 13 eggs.", "Total = 13", "The answer is 26."]).first_error is None


def test_aggregations() -> None:
    assert aggregate([0.9, 0.5, 0.8], "min") == 0.5
    assert aggregate([0.9, 0.5, 0.8], "last") == 0.8
    assert math.isclose(aggregate([0.9, 0.5, 0.8], "product"), 0.36)
    assert aggregate([], "min") == 0.0
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([1.0], "mean")  # type: ignore[arg-type]


def test_split_steps_drops_blank_lines() -> None:
    assert split_steps("  a = 1\n\n b\n") == ["a = 1", "b"]


def test_specs() -> None:
    assert parse_spec("judge:local:gemma") == ("judge", "local:gemma")
    assert parse_spec("arith") == ("arith", None)
    assert open_verifier("judge:http://127.0.0.1:9/v1").spec == "judge:http://127.0.0.1:9/v1"
    prm = open_verifier("prm:http://127.0.0.1:9/v1;step_tag=<extra_0>")
    assert prm.base == "http://127.0.0.1:9" and prm.step_tag == "<extra_0>"  # type: ignore[attr-defined]
    with pytest.raises(VerifierSpecError, match="unknown verifier 'oracle'.*known kinds: arith, classifier, judge, prm"):
        open_verifier("oracle")
    with pytest.raises(ValueError, match="needs the server's URL"):
        open_verifier("prm")
    with pytest.raises(ValueError, match="takes no argument"):
        open_verifier("arith:strict")
    with pytest.raises(ValueError, match="unknown prm option 'depth=2'"):
        open_verifier("prm:http://h:1;depth=2")


async def _verify(verifier_spec: str | JudgeVerifier, backend: ScriptedBackend, steps: list[str]) -> tuple[Verdict, Graph]:
    """The verdict of `run.verify` inside a node (`check`) of a graph of its own, and the graph."""
    graph = Graph()
    verifier = open_verifier(verifier_spec)
    top = graph.function(Run.body(graph, lambda run: run.verify(verifier, "How much does Janet make?", steps)), label="check")
    usage = await Engine(backend).run(graph)
    graph.nx.graph["usage"] = usage
    assert graph.status(top) == "done", graph.root_cause(top)
    return graph.output(top), graph


async def test_arith_runs_as_a_traced_tool_node_without_model_calls() -> None:
    verdict, graph = await _verify("arith", ScriptedBackend([]), STEPS)
    assert verdict.first_error == 1
    # Beside the node that asked for it, one node: the verifier's, a tool, with no model call inside.
    [node] = [n for n in graph.nx.nodes if n != "check"]
    assert node == "verify" and graph.node(node).kind == "tool" and graph.node(node).output["scores"] == [1.0, 0.0, 1.0]
    assert graph.nx.graph["usage"].calls == 0


async def test_judge_scores_p_yes_from_logprobs_per_step() -> None:
    # Step 2 is judged "No" with probability e^-0.2; the others "Yes" with e^-0.1.
    backend = ScriptedBackend(
        [Rule(r"Step 2: She makes[^\n]*\n\nIs the last step", "No", logprob=-0.2), Rule("Is the last step", "Yes", logprob=-0.1)]
    )
    verdict, graph = await _verify("judge", backend, STEPS)
    assert verdict.scores == pytest.approx([math.exp(-0.1), 1 - math.exp(-0.2), math.exp(-0.1)])
    assert verdict.first_error == 1
    assert graph.nx.graph["usage"].calls == 3  # one greedy verdict per step, counted
    assert all(r.logprobs and r.temperature == 0 for r in backend.requests)
    # The verifier is a function node; its judgements are model nodes inside it, each step's
    # started together (none waits for another: the verify node is the only one that waits).
    assert graph.node("verify").kind == "function"
    judged = [n for n in graph.nx.nodes if ".judge" in n]
    assert judged == ["verify.judge0", "verify.judge1", "verify.judge2"]
    assert all(graph.node(n).kind == "model" for n in judged)
    assert {(a, b) for a, b in graph.nx.edges if a in judged} == {(n, "verify") for n in judged}


async def test_judge_without_logprobs_samples_votes() -> None:
    backend = ScriptedBackend([Rule("Is this solution correct", ["Yes", "No", "Yes", "Yes", "maybe", "No"])])
    verdict, graph = await _verify(JudgeVerifier(per_step=False, votes=5), backend, STEPS)
    # The greedy verdict ("Yes", no log-probabilities) is not enough: the 5 sampled votes that follow
    # say No, Yes, Yes, maybe, No: 2 yes of 4 readable.
    assert verdict.scores == [0.5] and not verdict.per_step
    assert [r.n for r in backend.requests] == [1, 5] and backend.requests[1].temperature == 1.0
    assert graph.nx.graph["usage"].calls == 2


async def test_judge_without_a_readable_verdict_falls_back_to_votes_per_step() -> None:
    # Step 2's greedy verdict reads as neither: only that judgement samples votes.
    backend = ScriptedBackend(
        [
            Rule(r"Step 2: She makes[^\n]*\n\nIs the last step", ["Perhaps", "Yes", "No", "No", "No", "No"]),
            Rule("Is the last step", "Yes", logprob=-0.1),
        ]
    )
    verdict, graph = await _verify("judge", backend, STEPS)
    assert verdict.scores == pytest.approx([math.exp(-0.1), 0.2, math.exp(-0.1)])
    assert [n for n in graph.nx.nodes if ".judge" in n] == ["verify.judge0", "verify.judge1", "verify.judge2", "verify.judge1.votes"]
    assert ("verify.judge1", "verify.judge1.votes") in graph.nx.edges  # the votes follow the verdict that was not enough


async def test_judge_on_another_model_is_a_billed_tool_node() -> None:
    from reasoner.testing.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer("judge-model", responder=lambda body, i: "Yes") as server:
        # The model that generates answers nothing: every judgement goes to the other server.
        verdict, graph = await _verify(f"judge:{server.base_url}", ScriptedBackend([]), STEPS[:2])
    assert verdict.verifier == f"judge:{server.base_url}"
    assert verdict.scores == pytest.approx([math.exp(-0.1)] * 2)  # the fake server's log-probability
    judged = [graph.node(n) for n in graph.nx.nodes if ".judge" in n]
    assert [n.id for n in judged] == ["verify.judge0", "verify.judge1"] and all(n.kind == "tool" for n in judged)
    # Each call is recorded and billed on its node, so the run's usage counts the judge's calls.
    assert all(n.calls == 1 and n.prompt_tokens > 0 and n.request["max_tokens"] == 4 for n in judged)
    assert graph.nx.graph["usage"].calls == 2 and len(server.completion_requests()) == 2
