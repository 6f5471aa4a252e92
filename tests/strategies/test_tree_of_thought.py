"""Tree of thought: graph shapes of BFS and DFS, the evaluators, terminal states, the final choice,
concurrency within a level, and the CLI (the search alone: test_tree_search.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import networkx as nx
import pytest

from reasoner.cli.main import main
from reasoner.testing.scripted import ScriptedBackend
from reasoner.engine import Engine
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.graph import Graph
from reasoner.types import Choice, Completion, GenerationRequest, Solution
from reasoner.strategies.tree_of_thought import TreeOfThought, gives_answer, rating, vote_counts

QUESTION = "Tom has 3 apples and buys 4 more. He gives 2 away. How many apples does he have?"
SAMPLE, VALUE, VOTE, PROPOSE = "Solve the problem step by step", "Verdict:", "The best choice is", "Propose"


def steps_of(request: GenerationRequest) -> list[str]:
    """The lines a request is about: a sample's prefill, or the "Steps so far" of a rating."""
    assert request.messages is not None
    user, last = request.messages[0].content, request.messages[-1].content
    if "Steps so far:\n" in user:
        block = user.split("Steps so far:\n", 1)[1].split("\n\n", 1)[0]
        return [] if block == "(none yet)" else block.split("\n")
    body = last.removeprefix("A:").strip()
    return body.split("\n") if body else []


def world(children: Callable[[str], list[str]], verdict: Callable[[str], str | list[str]], **extra: Any) -> ScriptedBackend:
    """A scripted model: the next lines after a state's last line, and the verdict on a state."""

    def sample(request: GenerationRequest, i: int) -> str:
        steps = steps_of(request)
        return " " + children(steps[-1] if steps else "")[i % request.n]

    def value(request: GenerationRequest, i: int) -> str:
        v = verdict(steps_of(request)[-1])
        return " " + (v if isinstance(v, str) else v[i % request.n])

    return ScriptedBackend([(VALUE, value), (SAMPLE, sample), *extra.pop("rules", [])], **extra)


def letters(line: str) -> list[str]:
    """Three children per state, named by path: "s-a", "s-a-b", ...; no digits, so no answers."""
    return [f"{line or 's'}-{c}" for c in "abc"]


def by_last_letter(line: str) -> str:
    return {"a": "sure", "b": "likely", "c": "impossible"}[line[-1]]


def nodes(solution: Solution, label: str, depth: int | None = None) -> list[dict[str, Any]]:
    """The trace's nodes with this label prefix, optionally only those about states at `depth`
    (sampling from depth d-1 makes states at d; "sample@root" is depth 0)."""
    out = []
    for node in solution.trace["nodes"]:
        name, _, where = node["id"].partition("@")
        if name != label:
            continue
        at = 0 if where == "root" else where.count(".") + 1
        if depth is None or at == depth:
            out.append(node)
    return out


async def test_bfs_levels_generate_breadth_times_candidates_and_rate_each() -> None:
    backend = world(letters, by_last_letter)
    strategy = TreeOfThought(breadth=2, depth=3, candidates=3, n_evaluate=2)
    solution = await strategy.solve(QUESTION, backend)
    assert solution.error is None

    # Level 1 expands the root; levels 2 and 3 expand the 2 kept states, 3 samples each (n=3).
    assert [len(nodes(solution, "sample", d)) for d in (0, 1, 2)] == [1, 2, 2]
    assert {n["request"]["n"] for n in nodes(solution, "sample")} == {3}
    # Every candidate is rated once, with n_evaluate samples.
    assert [len(nodes(solution, "value", d)) for d in (1, 2, 3)] == [3, 6, 6]
    assert {n["request"]["n"] for n in nodes(solution, "value")} == {2}
    # The beam keeps the two best of each level: "a" (sure) first, then "b" or the other "a".
    assert [n["id"] for n in nodes(solution, "sample", 1)] == ["sample@1", "sample@2"]
    assert [n["id"] for n in nodes(solution, "sample", 2)] == ["sample@1.1", "sample@2.1"]
    # In the trace a state is expanded after the ratings that kept it, and rated after the
    # sampling that proposed it, so the graph reads as the search.
    edges = {(e["source"], e["target"]) for e in solution.trace["edges"]}
    assert {("value@1", "sample@1"), ("value@1.1", "sample@1.1"), ("sample@2", "value@2.1")} <= edges
    # No "parse" or "select" steps: only the model calls, inside the strategy's own node.
    assert {n["id"] for n in solution.trace["nodes"] if n["kind"] != "model"} == {"tree-of-thought"}

    stats = solution.details["search"]
    assert stats["expanded"] == [1, 2, 2]
    assert stats["generated"] == stats["evaluated"] == 15
    assert stats["pruned"] == 1 + 4 + 4
    assert stats["terminal"] == 0 and stats["finished"] == 2
    assert solution.details["best_path"] == ["s-a", "s-a-a", "s-a-a-a"]
    assert solution.details["best_score"] == 20.0
    assert solution.text == "s-a\ns-a-a\ns-a-a-a"
    # No line gave an answer: the states at the depth limit are finished, but not complete.
    assert [f["complete"] for f in solution.details["finished"]] == [False, False]
    assert solution.answer is None


async def test_requests_sample_one_line_hot_and_rate_cool() -> None:
    backend = world(letters, by_last_letter)
    await TreeOfThought(breadth=1, depth=2, candidates=3, n_evaluate=3, k=2).solve(QUESTION, backend)
    samples = [r for r in backend.requests if r.messages and SAMPLE in r.messages[0].content]
    ratings = [r for r in backend.requests if r.messages and r.messages[-1].content == VALUE]
    assert [(r.n, r.temperature, r.max_tokens, r.stop) for r in samples] == [(3, 0.7, 64, ("\n",))] * 2
    assert [r.messages[-1].content for r in samples if r.messages] == ["A:", "A: s-a\n"]
    assert samples[0].messages is not None and samples[0].messages[0].content.count("\nQ: ") == 3  # k=2 exemplars
    assert {(r.n, r.temperature, r.max_tokens) for r in ratings} == {(3, 0.3, 8)}
    assert len(ratings) == 6


def test_value_parsing_averages_the_verdicts() -> None:
    def completion(*texts: str) -> Completion:
        return Completion(choices=[Choice(text=t) for t in texts])

    assert rating(completion(" sure", " likely", " impossible")) == pytest.approx((20 + 1 + 0.001) / 3)
    # A sample naming no verdict is left out; the first verdict named counts.
    assert rating(completion(" Sure.", " likely or impossible", " no idea")) == pytest.approx(10.5)
    assert rating(completion(" hmm", "")) is None


async def test_unrated_states_count_as_likely() -> None:
    backend = world(letters, lambda line: ["sure", "likely", "???"] if line == "s-a" else "???")
    solution = await TreeOfThought(breadth=3, depth=1, candidates=3, n_evaluate=3).solve(QUESTION, backend)
    assert [f["score"] for f in solution.details["finished"]] == [10.5, 1.0, 1.0]
    assert solution.details["unrated"] == 2


async def test_vote_evaluator_counts_the_votes() -> None:
    tree = {
        "": ["Tom has 3 + 4 = 7 apples.", "Tom has 3 - 4 = -1 apples.", "Tom has 3 * 4 = 12 apples."],
        "Tom has 3 + 4 = 7 apples.": ["He has 7 - 2 = 5. The answer is 5.", "The answer is 9.", "The answer is 5 apples."],
    }
    votes = [" 1", " 1", " 2", " I think 1", " 7"]  # 3 for choice 1, 1 for choice 2; "7" is no choice
    backend = world(tree.__getitem__, by_last_letter, rules=[(VOTE, votes)])
    strategy = TreeOfThought(evaluator="vote", breadth=1, depth=3, candidates=3, n_evaluate=5)
    solution = await strategy.solve(QUESTION, backend)

    # One vote per level over all its candidates, n_evaluate votes in one request; no value calls.
    assert [n["id"] for n in nodes(solution, "vote")] == ["vote@d1", "vote@d2"]
    assert {n["request"]["n"] for n in nodes(solution, "vote")} == {5}
    assert nodes(solution, "value") == []
    ballot = nodes(solution, "vote")[0]["request"]["messages"][0]["content"]
    assert "Choice 1:\nTom has 3 + 4 = 7 apples." in ballot and "Choice 3:\nTom has 3 * 4 = 12 apples." in ballot
    assert solution.answer == "5"
    assert solution.details["best_path"] == ["Tom has 3 + 4 = 7 apples.", "He has 7 - 2 = 5. The answer is 5."]
    assert solution.details["best_score"] == 3.0
    assert solution.details["search"]["terminal"] == 3
    assert vote_counts(Completion(choices=[Choice(text=" 2"), Choice(text="0"), Choice(text=" 2.")]), 2) == [0.0, 2.0]


DFS_TREE = {
    "": ["a", "b", "c"],
    "a": ["a-x", "The answer is 7.", "a-z"],
    "b": ["b-x", "b-y", "b-z"],
}
DFS_VERDICTS = {"a": "likely", "b": "sure", "c": "impossible", "a-x": "likely", "The answer is 7.": "sure"}


def dfs_world(**extra: Any) -> ScriptedBackend:
    return world(DFS_TREE.__getitem__, lambda line: DFS_VERDICTS.get(line, "impossible"), **extra)


async def test_dfs_prunes_below_the_threshold_and_backtracks() -> None:
    backend = dfs_world()
    strategy = TreeOfThought(search="dfs", depth=4, candidates=3, n_evaluate=1, threshold=0.5)
    solution = await strategy.solve(QUESTION, backend)
    stats = solution.details["search"]
    # The root, then "b" (sure) whose children are all impossible, then back up to "a" (likely),
    # whose child "The answer is 7." ends the search. "c" is pruned and never expanded.
    assert stats["order"] == ["", "2", "1"]
    assert stats["backtracks"] == 1
    assert stats["pruned"] == 1 + 3 + 1
    assert stats["expanded"] == [1, 2]
    assert solution.answer == "7"
    assert solution.details["best_path"] == ["a", "The answer is 7."]
    assert [f["id"] for f in solution.details["finished"]] == ["1.2"]
    expansions = sorted(nodes(solution, "sample"), key=lambda n: n["started_s"])
    assert [n["id"] for n in expansions] == ["sample@root", "sample@2", "sample@1"]
    # Each expansion's children are rated before the search picks the next state to expand.
    assert [n["id"] for n in solution.trace["nodes"] if n["kind"] == "model"] == [
        "sample@root", "value@1", "value@2", "value@3", "sample@2", "value@2.1", "value@2.2", "value@2.3",
        "sample@1", "value@1.1", "value@1.2", "value@1.3",
    ]  # fmt: skip
    # A state is expanded after the rating that kept it, the backtracked one too (after the
    # ratings of the subtree it backtracked from, which is when the search took it up).
    edges = {(e["source"], e["target"]) for e in solution.trace["edges"] if not e.get("waited")}
    assert ("value@2", "sample@2") in edges
    assert nx.has_path(nx.DiGraph(list(edges)), "value@1", "sample@1")


async def test_dfs_gives_up_when_the_budget_is_spent() -> None:
    solution = await TreeOfThought(search="dfs", candidates=3, n_evaluate=1, max_expansions=2).solve(QUESTION, dfs_world())
    assert solution.details["search"]["order"] == ["", "2"]
    assert solution.answer is None and solution.error is None
    assert solution.details["finished"] == []


async def test_dfs_threshold_is_an_option() -> None:
    # With the bar above "likely", only "b" survives the root, and nothing survives "b".
    strategy = TreeOfThought(search="dfs", candidates=3, n_evaluate=1, threshold=5)
    solution = await strategy.solve(QUESTION, dfs_world())
    assert solution.details["search"]["order"] == ["", "2"]
    assert solution.answer is None


async def test_a_terminal_state_is_finished_not_expanded() -> None:
    tree = {
        "": ["The answer is 5.", "Tom has 3 + 4 = 7 apples.", "junk"],
        "Tom has 3 + 4 = 7 apples.": ["He gives 2: 7 - 2 = 5 left.", "So the answer is 9.", "junk 2"],
        "He gives 2: 7 - 2 = 5 left.": ["The answer is 5 apples.", "more", "junk 3"],
    }
    verdicts = {"The answer is 5.": "sure", "The answer is 5 apples.": "sure", "So the answer is 9.": "impossible"}
    backend = world(lambda line: tree.get(line, [f"{line}-{c}" for c in "xyz"]), lambda line: verdicts.get(line, "likely"))
    solution = await TreeOfThought(breadth=2, depth=5, candidates=3, n_evaluate=1).solve(QUESTION, backend)
    # The beam kept "The answer is 5." and "Tom has 3 + 4 = 7 apples."; only the latter grows.
    assert [n["id"] for n in nodes(solution, "sample", 1)] == ["sample@2"]
    stats = solution.details["search"]
    assert stats["terminal"] == 3
    assert solution.answer == "5"
    assert [(f["id"], f["complete"]) for f in solution.details["finished"]][:2] == [("1", True), ("2.1.1", True)]
    assert gives_answer("So the answer is $12.") and gives_answer("#### 7") and gives_answer("Answer: 3")
    assert not gives_answer("5 + 2 = 7") and not gives_answer("The answer is") and not gives_answer("answers vary: 4")


@pytest.mark.parametrize(("final", "answer", "path"), [("best", "4", "The answer is 4."), ("vote", "9", "So the answer is 9.")])
async def test_final_best_or_majority_vote(final: str, answer: str, path: str) -> None:
    tree = {"": ["The answer is 4.", "So the answer is 9.", "The answer is 9 apples."]}
    backend = world(tree.__getitem__, lambda line: "sure" if "4" in line else "likely")
    solution = await TreeOfThought(breadth=3, depth=2, candidates=3, n_evaluate=1, final=final).solve(QUESTION, backend)
    assert solution.answer == answer
    assert solution.text == path
    assert [f["answer"] for f in solution.details["finished"]] == ["4", "9", "9"]
    if final == "vote":
        assert solution.details["votes"] == {"4": 1, "9": 2}


async def test_the_candidates_of_a_level_run_concurrently() -> None:
    backend = world(letters, by_last_letter, delay_s=0.05)
    solution = await TreeOfThought(breadth=3, depth=2, candidates=3, n_evaluate=1).solve(QUESTION, backend)
    level2_samples, level2_values = nodes(solution, "sample", 1), nodes(solution, "value", 2)
    assert len(level2_samples) == 3 and len(level2_values) == 9
    # Each started before any of its siblings ended.
    for level in (level2_samples, level2_values):
        assert max(n["started_s"] for n in level) < min(n["ended_s"] for n in level)
    # Counted, not timed: the 9 ratings of level 2 were in flight at once.
    assert backend.peak_in_flight == 9
    assert solution.usage.calls == 1 + 3 + 3 + 9


async def test_propose_lists_several_next_steps_in_one_call() -> None:
    proposals = {
        0: " Tom has 3 + 4 = 7 apples.\n2. Tom has 3 - 2 = 1 apple.\n3. The answer is 9.\n4. An extra one.",
        1: "1. He has 7 - 2 = 5 apples.\n2. The answer is 5.\n3. The answer is 5.",
    }
    backend = world(
        letters,
        lambda line: "sure" if line in ("Tom has 3 + 4 = 7 apples.", "The answer is 5.") else "likely",
        rules=[(PROPOSE, lambda r, i: proposals[len(steps_of(r))])],
    )
    strategy = TreeOfThought(generator="propose", breadth=1, depth=3, candidates=3, n_evaluate=1)
    solution = await strategy.solve(QUESTION, backend)
    proposed = nodes(solution, "propose")
    assert [n["id"] for n in proposed] == ["propose@root", "propose@1"]
    assert {(n["request"]["n"], n["request"]["max_tokens"]) for n in proposed} == {(1, 3 * 64)}
    first, second = (n["request"]["messages"][0]["content"] for n in proposed)
    assert "Steps so far:\n(none yet)" in first and "Steps so far:\nTom has 3 + 4 = 7 apples.\n\n" in second
    stats = solution.details["search"]
    assert stats["generated"] == 3 + 3 and stats["duplicates"] == 1  # the 4th proposal is ignored
    assert solution.answer == "5"
    assert solution.details["best_path"] == ["Tom has 3 + 4 = 7 apples.", "The answer is 5."]


async def test_it_composes_inside_a_scope() -> None:
    graph = Graph()
    final = TreeOfThought(breadth=2, depth=2, candidates=2, n_evaluate=1).build(graph.scope("tot"), QUESTION)
    await Engine(world(letters, by_last_letter)).run(graph)
    assert graph.status(final) == "done"
    assert all(node.startswith("tot/") for node in graph.nx.nodes)


def test_cli_json_against_the_fake_openai_server(capsys: pytest.CaptureFixture[str]) -> None:
    def responder(body: dict[str, Any], index: int) -> str:
        # A plain chat server: the prefill arrives as the end of the user's turn.
        (message,) = body["messages"]
        text = message["content"]
        if text.endswith("Verdict:"):
            return "sure" if "The answer is" in text else "likely"
        if text.endswith("A:"):
            return f"A: Tom has 3 + 4 = 7 apples (way {index})."
        return "The answer is 5."

    with FakeOpenAIServer(responder=responder) as server:
        code = main(
            ["solve", QUESTION, "--strategy", "tree-of-thought", "--model", server.base_url, "--json",
             "--breadth", "2", "--depth", "3", "--candidates", "2", "--n-evaluate", "1"]
        )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["answer"] == "5" and out["strategy"] == "tree-of-thought"
    stats = out["details"]["search"]
    assert stats["expanded"] == [1, 2] and stats["generated"] == 6 and stats["duplicates"] == 2 and stats["terminal"] == 2
    assert out["details"]["best_path"] == ["Tom has 3 + 4 = 7 apples (way 0).", "The answer is 5."]
    assert out["usage"]["calls"] == 1 + 2 + 2 + 2


@pytest.mark.slow
@pytest.mark.parametrize("search", ["bfs", "dfs"])
async def test_end_to_end_on_the_embedded_model(search: str) -> None:
    from reasoner.backends.local import LlamaCppBackend

    question = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"
    strategy = TreeOfThought(
        search=search, breadth=2, depth=2, candidates=2, n_evaluate=1, k=1, max_tokens=16, eval_max_tokens=2, max_expansions=2
    )
    solution = await strategy.solve(question, LlamaCppBackend())
    assert solution.error is None
    stats = solution.details["search"]
    assert stats["expanded"][0] == 1 and stats["generated"] <= 2 + 2 * 2
    assert stats["evaluated"] == stats["generated"] - stats["duplicates"]
    assert all(len(f["id"].split(".")) <= 2 for f in solution.details["finished"])
    if solution.answer is not None:
        assert solution.details["best_path"] and len(solution.details["best_path"]) <= 2


async def test_any_verifier_can_be_the_evaluator() -> None:
    # From the root the model offers a slip and a correct line; the arithmetic checker scores the
    # slip 0, so the beam of one keeps the correct line and the answer follows from it.
    def children(line: str) -> list[str]:
        if line == "":
            return ["3 + 4 = 8 apples after buying.", "3 + 4 = 7 apples after buying.", "3 + 4 = 8 apples after buying."]
        if line.startswith("3 + 4 = 7"):
            return ["7 - 2 = 5. The answer is 5."] * 3
        return ["8 - 2 = 6. The answer is 6."] * 3

    backend = world(children, lambda line: "sure")
    strategy = TreeOfThought(evaluator="verifier", verifier="arith", breadth=1, depth=3)
    solution = await strategy.solve(QUESTION, backend)
    assert solution.answer == "5", solution.details
    assert not nodes(solution, "value"), "the model was asked for verdicts though a verifier scores the states"
    # One verifier node per distinct candidate (the repeated slip is scored once).
    assert [n["id"] for n in nodes(solution, "verify")] == ["verify@1", "verify@2", "verify@2.1"]


def test_a_bad_verifier_spec_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="unknown verifier 'nope'"):
        TreeOfThought(evaluator="verifier", verifier="nope:x")
