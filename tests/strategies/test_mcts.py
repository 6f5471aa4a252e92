"""MCTS: UCT, selection and backpropagation on their own; the strategy on scripted replies (one
request with n per expansion, rStar's mutual consistency) and on the simulated step model (accuracy
against greedy chain-of-thought, requests counted)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from reasoner.answers import is_correct
from reasoner.backends.http import OpenAIBackend
from reasoner.data import load_gsm8k
from reasoner.simulators.steps import StepSimulator
from reasoner.strategies.mcts_search import TreeNode, backpropagate, mcts, select, uct
from reasoner.strategies.tree_search import SearchNode
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import GenerationRequest

QUESTION = "Janet's ducks lay 16 eggs a day; she eats 3, bakes with 4 and sells the rest at $2. How much does she make?"


def test_uct_tries_an_unvisited_child_first_then_trades_value_against_visits() -> None:
    assert uct(TreeNode(state=()), 5, 1.0) == math.inf
    child = TreeNode(state=(), visits=2, total=1.0)
    assert uct(child, 8, 1.0) == pytest.approx(0.5 + math.sqrt(math.log(8) / 2))
    assert uct(child, 8, 0.0) == 0.5  # no exploration: the mean value alone


def test_select_walks_down_by_uct_and_stops_at_an_unvisited_child() -> None:
    good = TreeNode(state=("g",), id="1", visits=3, total=2.7, value=0.9, expanded=True)
    poor = TreeNode(state=("p",), id="2", visits=1, total=0.1, value=0.1)
    root = TreeNode(state=(), visits=4, total=2.8, value=0.0, expanded=True, children=[good, poor])
    fresh = TreeNode(state=("g", "x"), id="1.1")
    good.children = [fresh]
    # 0.9 + sqrt(ln 4 / 3) = 1.58 beats 0.1 + sqrt(ln 4 / 1) = 1.28; under "good", "1.1" is unvisited.
    assert [n.id for n in select(root, 1.0)] == ["", "1", "1.1"]
    # With a large exploration constant the rarely visited child wins.
    assert [n.id for n in select(root, 5.0)] == ["", "2"]


def test_backpropagation_adds_a_visit_and_the_value_along_the_path() -> None:
    path = [TreeNode(state=(), visits=2, total=1.0), TreeNode(state=("a",), visits=1, total=0.5)]
    backpropagate(path, 0.25)
    assert [(n.visits, n.total) for n in path] == [(3, 1.25), (2, 0.75)]


class Letters:
    """A toy space: a state is a string of a and b; its value is the share of a's; three letters end it."""

    def __init__(self) -> None:
        self.expanded: list[str] = []

    def is_terminal(self, state: str) -> bool:
        return len(state) == 3

    async def expand(self, run: Any, nodes: Sequence[SearchNode], tag: str) -> list[list[str]]:
        self.expanded += [n.state for n in nodes]
        return [[n.state + "b", n.state + "a", n.state + "a"] for n in nodes]  # a repeat, dropped

    async def evaluate(self, run: Any, nodes: Sequence[SearchNode], tag: str) -> list[float]:
        return [n.state.count("a") / len(n.state) for n in nodes]


class NoRun:
    def scope(self, name: str) -> NoRun:
        return self


async def test_the_search_backs_values_up_and_spends_its_visits_on_the_better_branch() -> None:
    space = Letters()
    result = await mcts(NoRun(), "", space, iterations=30, depth=3, exploration=0.5)  # type: ignore[arg-type]
    root = result.root
    assert root.visits == result.iterations == 30
    b, a = root.children  # the repeated "a" was dropped
    assert (b.state, a.state) == ("b", "a") and a.visits > 2 * b.visits
    for node in root.walk()[1:]:
        # Every visit backed up one value: its own evaluation's, or a descendant's.
        assert node.visits == 1 + sum(c.visits for c in node.children) or node.terminal
        assert 0.0 <= node.q <= 1.0
    assert root.total == pytest.approx(sum(c.total for c in root.children))
    assert "aaa" in {n.state for n in root.walk() if n.terminal}
    assert result.expansions == len(space.expanded) and len(set(space.expanded)) == len(space.expanded)  # each state once


async def test_the_search_stops_once_the_tree_is_exhausted() -> None:
    result = await mcts(NoRun(), "", Letters(), iterations=500, depth=2)  # type: ignore[arg-type]
    # 2 + 4 states to evaluate, the root and 2 states to expand; the other iterations went back
    # to depth-limited leaves, until the last open state was done.
    assert (result.evaluations, result.expansions) == (6, 3) and result.iterations < 500
    assert result.iterations == result.evaluations + result.revisits
    shorter = await mcts(NoRun(), "", Letters(), iterations=result.iterations - 1, depth=2)  # type: ignore[arg-type]
    assert shorter.evaluations + shorter.expansions < 9  # one iteration fewer left work undone


NEXT = {  # the last line so far -> (next steps a request with n samples in turn, the rest of the solution)
    "= 9 eggs.": (["She makes 9 * 2 = 18 dollars.", "She makes 9 * 2 = 19 dollars."], "She makes 9 * 2 = 18 dollars.\nThe answer is 18."),
    "= 8 eggs.": (["She makes 8 * 2 = 16 dollars."], "She makes 8 * 2 = 16 dollars.\nThe answer is 16."),
    "dollars.": (["The answer is {}."], "The answer is {}."),
    "A:": (["She sells 16 - 3 - 4 = 9 eggs.", "She sells 16 - 3 - 4 = 8 eggs."],
           "She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = 18 dollars.\nThe answer is 18."),
}  # fmt: skip


def janet(root_steps: list[str] | None = None) -> ScriptedBackend:
    """Scripted steps for QUESTION: a step request (stop at the line's end) gets the next sampled
    step, one per choice; a rollout gets the rest of the solution."""
    counts: dict[str, int] = {}

    def reply(request: GenerationRequest, _: int) -> str:
        last = request.as_messages()[-1].content.rstrip("\n").splitlines()[-1]
        key = next(k for k in NEXT if last.endswith(k))
        steps, rest = NEXT[key]
        if key == "A:" and root_steps:
            steps = root_steps
        value = last.rsplit("= ", 1)[-1].split()[0] if key == "dollars." else ""
        if request.stop == ("\n",):
            counts[last] = counts.get(last, -1) + 1
            return steps[counts[last] % len(steps)].format(value)
        return rest.format(value)

    return ScriptedBackend([("Q: Janet", reply)])


async def test_expansions_are_one_request_with_n_and_the_slip_branch_is_visited_less() -> None:
    backend = janet()
    solution = await get_strategy("mcts", iterations=8, children=2, seed=0).solve(QUESTION, backend)
    assert solution.error is None and solution.answer == "18"
    steps = [r for r in backend.requests if r.stop == ("\n",)]
    assert steps and all(r.n == 2 for r in steps)
    stats = solution.details["stats"]
    assert len(steps) == stats["expansions"] and len(backend.requests) == stats["expansions"] + stats["evaluations"] - stats["terminal"]
    tree = {n["id"]: n for n in solution.details["tree"]}
    assert tree["root"]["visits"] == 8 and tree["1"]["visits"] > tree["2"]["visits"]
    # 16 - 3 - 4 = 8 and 9 * 2 = 19 are slips the checker sees; the rest is right.
    assert {i: n["value"] for i, n in tree.items() if i in ("1", "2", "1.1", "1.2")} == {"1": 1.0, "2": 0.0, "1.1": 1.0, "1.2": 0.0}
    # The tree is the trace: each iteration's calls in its scope, labelled with their node.
    ids = {n["id"] for n in solution.trace["nodes"]}
    assert {"iter0/expand@root", "iter0/rollout@1", "iter0/verify@1", "iter1/rollout@2"} <= ids


async def test_mutual_consistency_rejects_a_path_the_model_does_not_reach_again() -> None:
    # "The answer is 11." straight away: nothing for the checker to refute, and found first.
    root = ["The answer is 11.", "She sells 16 - 3 - 4 = 9 eggs."]
    best = await get_strategy("mcts", iterations=6, children=2, final="best", seed=0).solve(QUESTION, janet(root))
    assert best.answer == "11"
    checked = await get_strategy("mcts", iterations=6, children=2, final="best", mutual=2, seed=0).solve(QUESTION, janet(root))
    assert checked.answer == "18"
    verdicts = {m["answer"]: m["agrees"] for m in checked.details["mutual"]}
    assert verdicts == {"11": False, "18": True}  # given none of its steps, the model answers 18


def test_consistency_values_need_rollouts_and_say_so() -> None:
    with pytest.raises(ValidationError, match="needs rollouts >= 1"):
        get_strategy("mcts", value="consistency", rollouts=0)
    with pytest.raises(ValidationError, match="verifier"):
        get_strategy("mcts", verifier="nonsense")


@pytest.fixture(scope="module")
def sim_server() -> object:
    pool = load_gsm8k("test")[:40]
    sim = StepSimulator(pool, arith_rate=0.15, logic_rate=0.0, seed=3)
    problems = [p for p in pool if sim.usable(p.question)][:12]
    with FakeOpenAIServer(responder=sim.respond) as server:
        yield server, problems


@pytest.mark.parametrize("options", [{}, {"value": "consistency", "rollouts": 3}, {"rollouts": 0, "iterations": 48}])
async def test_on_the_simulated_model_mcts_beats_greedy_chain_of_thought(sim_server, options: dict) -> None:  # type: ignore[no-untyped-def]
    server, problems = sim_server
    backend = OpenAIBackend(server.base_url, "fake-model")
    try:
        baseline = searched = 0
        for i, p in enumerate(problems):
            plain = await get_strategy("few-shot-cot", temperature=0.7, seed=i).solve(p.question, backend)
            server.reset()
            solution = await get_strategy("mcts", seed=i, **options).solve(p.question, backend)
            assert solution.error is None, solution.error
            baseline += is_correct(plain.answer, p.gold)
            searched += is_correct(solution.answer, p.gold)
            # Counted on the server: one request per expansion, each asking for all the children.
            stats = solution.details["stats"]
            expansions = [r.body for r in server.completion_requests() if r.body["stop"] == ["\n"]]
            assert len(expansions) == stats["expansions"] and {b["n"] for b in expansions} == {3}
    finally:
        await backend.aclose()
    assert searched > baseline and searched >= len(problems) - 2


@pytest.mark.slow
async def test_on_the_embedded_model_it_runs_to_an_answer_or_no_answer(local_backend) -> None:  # type: ignore[no-untyped-def]
    mcts_ = get_strategy("mcts", iterations=3, children=2, depth=2, k=2, max_tokens=32, seed=0)
    solution = await mcts_.solve("Tom has 3 apples and buys 4 more. How many apples does he have?", local_backend)
    assert solution.error is None, solution.error
    assert solution.answer is None or solution.answer.lstrip("-").replace(".", "", 1).isdigit()
    [root] = [n for n in solution.trace["nodes"] if n["id"] == "iter0/expand@root"]
    assert root["request"]["n"] == 2 and len(root["output"]["choices"]) == 2  # the siblings: one batched call
