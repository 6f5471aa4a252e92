"""Self-consistency: the graph it builds, the vote, the stopping rules, the CLI, the real model."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from pydantic import ValidationError

from reasoner.cli.main import main
from reasoner.testing.scripted import Rule, ScriptedBackend
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.run import Run
from reasoner.strategy import Strategy, get_strategy
from reasoner.types import Answer, Choice, GenerationRequest
from reasoner.strategies.common import logprob_details
from reasoner.strategies.self_consistency import SelfConsistency, beta_confidence, majority_vote, should_stop

QUESTION = "How many apples does Tom have?"


def says(*numbers: int | None) -> list[str]:
    """Sample texts that conclude the given answers in order (None: a sample with no number)."""
    return ["I lost my way." if n is None else f"Tom has some.\nThe answer is {n}." for n in numbers]


def a(answer: str | None, logprob_sum: float | None = None, logprob_mean: float | None = None) -> Answer:
    details = {k: v for k, v in (("logprob_sum", logprob_sum), ("logprob_mean", logprob_mean)) if v is not None}
    return Answer(answer=answer, text=f"text {answer}", details=details)


def sc(**options: Any) -> SelfConsistency:
    strategy = get_strategy("self-consistency", **options)
    assert isinstance(strategy, SelfConsistency)
    return strategy


# -- the graph and the requests it makes ------------------------------------------------------------


async def test_k_samples_merge_into_one_request_with_n() -> None:
    backend = ScriptedBackend([("Tom", says(5, 5, 3, 5))])
    solution = await sc(samples=16).solve(QUESTION, backend)

    (request,) = backend.requests
    assert request.n == 16 and request.temperature == 0.7
    assert "Tom" in (request.prompt or "") and "Q:" in (request.prompt or "")  # the few-shot prompt
    nodes = {n["id"]: n for n in solution.trace["nodes"]}
    # Each sample is its inner strategy's node with its call inside; the whole run is one node.
    samples = {f"sample{i}/few-shot-cot" for i in range(16)}
    assert {f"sample{i}/reason" for i in range(16)} | samples | {"self-consistency"} == set(nodes)
    assert nodes["sample0/reason"]["merged"]["n"] == 16
    edges = {(e["source"], e["target"]) for e in solution.trace["edges"]}
    assert all((f"sample{i}/reason", f"sample{i}/few-shot-cot") in edges for i in range(16))
    assert all((sample, "self-consistency") in edges for sample in samples)
    assert solution.usage.calls == 1
    assert solution.answer == "5"
    assert solution.text == says(5)[0]
    d = solution.details
    assert d["votes"] == {"5": 12, "3": 4}
    assert d["agreement"] == 12 / 16
    assert d["samples_drawn"] == 16 and d["samples_cap"] == 16 and d["stopping"] == "none"
    assert d["answers"] == ["5", "5", "3", "5"] * 4
    assert "weights" not in d


async def test_without_n_support_the_samples_are_k_requests_with_distinct_seeds() -> None:
    backend = ScriptedBackend([("Tom", says(5, 3, 5))], supports_n=False)
    solution = await sc(samples=6, seed=7).solve(QUESTION, backend)
    assert [r.n for r in backend.requests] == [1] * 6
    # The copies share the user's seed; splitting the merged request gives each its own.
    assert sorted(r.seed for r in backend.requests) == list(range(7, 13))
    assert solution.usage.calls == 6
    assert solution.answer == "5"


async def test_each_round_moves_the_seed_past_the_samples_drawn() -> None:
    backend = ScriptedBackend([("Tom", says(5, 3))])
    solution = await sc(samples=8, seed=100, stopping="esc", window=4).solve(QUESTION, backend)
    assert [(r.n, r.seed) for r in backend.requests] == [(4, 100), (4, 104)]
    assert solution.details["samples_drawn"] == 8


async def test_zero_shot_cot_as_inner_strategy() -> None:
    def final(request: GenerationRequest, _i: int) -> str:
        return re.findall(r"\d+", request.as_text().split("step by step.")[-1])[-1]

    backend = ScriptedBackend(
        [("Therefore, the answer", final), ("Tom", ["He has 2 and 3, so 5", "so 4", "He has 5", "so 5"])]
    )
    solution = await sc(samples=4, inner="zero-shot-cot").solve(QUESTION, backend)
    reason, *answers = backend.requests
    assert reason.n == 4 and reason.temperature == 0.7  # the reasoning stage, merged
    assert [r.n for r in answers] == [1] * 4 and all(r.temperature == 0.0 for r in answers)
    assert solution.answer == "5"
    assert solution.details["answers"] == ["5", "4", "5", "5"]
    assert solution.details["votes"] == {"5": 3, "4": 1}


def test_inner_must_be_a_registered_strategy() -> None:
    with pytest.raises(ValidationError, match="unknown strategy 'nope'"):
        sc(inner="nope")


class TextOnly(Strategy):
    """A strategy whose result is a bare completion, not an Answer."""

    name = "text-only"
    summary = "for tests"

    async def forward(self, run: Run, question: str) -> Any:
        return await run.generate(self.request(question), label="raw")


async def test_an_inner_strategy_without_an_answer_fails_the_vote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SelfConsistency, "sampler", lambda self, drawn: TextOnly())
    solution = await sc(samples=2).solve(QUESTION, ScriptedBackend([("Tom", "x")]))
    assert solution.error is not None and "gave Completion" in solution.error and "not an Answer" in solution.error


# -- the vote ----------------------------------------------------------------------------------------


def test_no_answer_never_wins_while_a_sample_has_one() -> None:
    winner, details = majority_vote([a(None), a(None), a(None), a("7")])
    assert winner == "7"
    assert details["votes"] == {"none": 3, "7": 1}
    assert details["agreement"] == 0.25 and details["sample"] == 3
    assert majority_vote([a(None), a(None)])[0] is None


def test_a_tie_goes_to_the_larger_summed_logprob() -> None:
    answers = [a("1", -5.0), a("2", -1.0), a("1", -4.0), a("2", -2.0), a(None, -0.1)]
    winner, details = majority_vote(answers)
    assert winner == "2"  # -3 beats -9
    assert details["sample"] == 1  # the winner's most probable sample gives the text


def test_without_logprobs_a_tie_goes_to_the_first_seen() -> None:
    assert majority_vote([a("9"), a("1"), a("1"), a("9")])[0] == "9"
    # One tied sample without a log-probability: the sums cannot be compared.
    assert majority_vote([a("9", -9.0), a("1", -1.0), a("1"), a("9", -9.0)])[0] == "9"


def test_a_clear_majority_ignores_logprobs() -> None:
    assert majority_vote([a("1", -50.0), a("1", -50.0), a("2", -0.1)])[0] == "1"


def test_weighted_vote_lets_confident_samples_outvote_more_numerous_ones() -> None:
    answers = [a("1", logprob_mean=-3.0)] * 3 + [a("2", logprob_mean=-0.1)] * 2 + [a("3")]
    assert majority_vote(answers)[0] == "1"
    winner, details = majority_vote(answers, "logprob")
    assert winner == "2"
    assert details["weights"]["2"] == pytest.approx(2 * 0.904837, rel=1e-5)
    assert details["weights"]["3"] == 1.0  # no log-probability: weight 1
    assert details["agreement"] == 2 / 6


async def test_weighted_strategy_asks_for_logprobs_and_uses_them() -> None:
    # Three long unlikely samples say 1, two short likely ones say 2.
    backend = ScriptedBackend([Rule("Tom", says(1, 1, 1, 2, 2), logprob=[-30.0, -30.0, -30.0, -0.5, -0.5])])
    plain = await sc(samples=5).solve(QUESTION, backend)
    assert plain.answer == "1"
    weighted = await sc(samples=5, weighting="logprob").solve(QUESTION, backend)
    assert backend.requests[-1].logprobs and not backend.requests[0].logprobs
    assert weighted.answer == "2"
    assert set(weighted.details["weights"]) == {"1", "2"}


def test_a_sample_records_its_trace_confidence() -> None:
    # 8 tokens at -2 then 32 at 0: the first 32-token group is the lowest, -16/32; the mean is -16/40.
    choice = Choice(text="x", token_logprobs=[-2.0] * 8 + [0.0] * 32)
    details = logprob_details(choice)
    assert details["trace_confidence"] == pytest.approx(-0.5)
    assert details["logprob_mean"] == pytest.approx(-0.4)
    assert "trace_confidence" not in logprob_details(Choice(text="x"))


async def test_confidence_weighting_records_and_uses_the_trace_confidence() -> None:
    # A scripted sample of 7 tokens (words) shares its log-probability evenly: -0.7 is -0.1 a token,
    # and a trace shorter than a group has its mean as confidence. Three unsure samples (-5 a token) say 1.
    backend = ScriptedBackend([Rule("Tom", says(1, 1, 1, 2, 2), logprob=[-35.0, -35.0, -35.0, -0.7, -0.7])])
    solution = await sc(samples=5, weighting="confidence").solve(QUESTION, backend)
    assert backend.requests[-1].logprobs
    assert solution.answer == "2"
    assert solution.details["weights"] == pytest.approx({"1": 3 * math.exp(-5.0), "2": 2 * math.exp(-0.1)}, rel=1e-5)
    assert (await sc(samples=5).solve(QUESTION, backend)).answer == "1"


async def test_verifier_weighting_outvotes_a_majority_with_wrong_arithmetic() -> None:
    right = "Tom has 2 + 3 = 5 apples.\nThe answer is 5."
    wrong = "Tom has 2 + 3 = 6 apples.\nThe answer is 6."
    backend = ScriptedBackend([("Tom", [wrong, right, wrong, wrong, right])])
    assert (await sc(samples=5).solve(QUESTION, backend)).answer == "6"
    solution = await sc(samples=5, weighting="verifier", verifier="arith").solve(QUESTION, backend)
    assert solution.answer == "5"
    assert solution.details["votes"] == {"6": 3, "5": 2}
    assert solution.details["weights"]["5"] > solution.details["weights"]["6"]
    assert solution.text == right


async def test_verifier_weighted_dirichlet_stops_on_the_samples_the_verifier_accepts() -> None:
    right = "Tom has 2 + 3 = 5 apples.\nThe answer is 5."
    wrong = "Tom has 2 + 3 = 6 apples.\nThe answer is 6."
    backend = ScriptedBackend([("Tom", [right, wrong, right, right, right, right])])
    strategy = sc(stopping="dirichlet", threshold=0.85, weighting="verifier")
    solution = await strategy.solve(QUESTION, backend)
    # 5, 6, 5 with 6 weighing nothing is 3 to 0: settled after the first round (plain 2 to 1 is not).
    assert solution.details["samples_drawn"] == 3 and solution.answer == "5"


def test_a_bad_verifier_spec_is_refused_at_construction() -> None:
    with pytest.raises(ValidationError, match="verifier"):
        sc(weighting="verifier", verifier="nonsense:spec")


def test_one_option_says_how_votes_are_weighted() -> None:
    assert sc().weighting == "none"
    with pytest.raises(ValidationError, match="weighting"):
        sc(weighting="loud")
    with pytest.raises(ValidationError, match="weighted"):  # the old flag, refused rather than ignored
        sc(weighted=True)


# -- stopping rules ----------------------------------------------------------------------------------


def test_beta_confidence_known_values() -> None:
    assert beta_confidence(4, 0) == 1 - 0.5**5 == 0.96875
    assert beta_confidence(3, 1) == 0.8125
    assert beta_confidence(0, 0) == 0.5
    assert beta_confidence(2, 2) == 0.5
    assert beta_confidence(7, 1) == 1 - 10 / 512
    assert beta_confidence(1, 3) == 1 - 0.8125  # symmetric
    assert beta_confidence(40, 30) > beta_confidence(4, 3)


def test_should_stop_rules() -> None:
    assert should_stop("beta", ["4"] * 4, 4, 0.95)
    assert not should_stop("beta", ["3", "3", "3", "1"], 4, 0.95)
    assert not should_stop("beta", [None] * 4, 4, 0.95)  # no answers: P = 0.5
    assert should_stop("beta", ["3", None, "3", "3", "3"], 4, 0.95)  # no answer is no rival
    assert should_stop("esc", ["1", "2", "5", "5", "5", "5"], 4, 0.95)
    assert not should_stop("esc", ["5", "5", "5", "2"], 4, 0.95)
    assert not should_stop("esc", [None] * 4, 4, 0.95)
    assert not should_stop("esc", ["5"] * 3, 4, 0.95)
    assert not should_stop("none", ["5"] * 16, 4, 0.95)


async def test_beta_stops_after_a_unanimous_first_round() -> None:
    backend = ScriptedBackend([("Tom", says(4))])
    solution = await sc(stopping="beta").solve(QUESTION, backend)
    assert [r.n for r in backend.requests] == [4]
    assert solution.details["samples_drawn"] == 4 and solution.details["rounds"] == 1
    assert solution.answer == "4"


async def test_beta_goes_on_at_3_to_1_and_stops_at_7_to_1() -> None:
    backend = ScriptedBackend([("Tom", says(3, 3, 3, 1, 3, 3, 3, 3, 9, 9, 9, 9))])
    solution = await sc(stopping="beta").solve(QUESTION, backend)
    assert [r.n for r in backend.requests] == [4, 4]
    d = solution.details
    assert d["samples_drawn"] == 8 and d["rounds"] == 2 and d["votes"] == {"3": 7, "1": 1}
    # The second round's samples follow the first's in the trace.
    assert {n["id"] for n in solution.trace["nodes"] if n["kind"] == "function"} == {
        "self-consistency", *(f"sample{i}/few-shot-cot" for i in range(8))
    }


async def test_esc_stops_after_the_first_window_that_agrees_and_not_before() -> None:
    backend = ScriptedBackend([("Tom", says(3, 3, 3, 1, None, None, None, None, 2, 2, 2, 2, 7, 7, 7, 7))])
    solution = await sc(stopping="esc").solve(QUESTION, backend)
    d = solution.details
    assert d["samples_drawn"] == 12 and d["rounds"] == 3
    assert solution.answer == "2"  # 4 votes for 2 beat 3 for 3
    assert d["votes"] == {"3": 3, "1": 1, "none": 4, "2": 4}


async def test_the_cap_is_respected_and_the_last_round_is_smaller() -> None:
    backend = ScriptedBackend([("Tom", says(1, 2, 3))])
    for rule in ("beta", "esc"):
        backend.requests.clear()
        solution = await sc(samples=10, stopping=rule).solve(QUESTION, backend)
        assert [r.n for r in backend.requests] == [4, 4, 2]
        assert solution.details["samples_drawn"] == 10 and solution.details["samples_cap"] == 10


# -- the command line --------------------------------------------------------------------------------


def test_cli_solve_with_self_consistency_over_http(capsys: pytest.CaptureFixture[str]) -> None:
    replies = says(42, 42, 41, 42)
    with FakeOpenAIServer(responder=lambda body, i: replies[i % 4]) as server:
        code = main(["solve", QUESTION, "--strategy", "self-consistency", "--samples", "4", "--json", "--model", server.base_url])
        (request,) = server.completion_requests()
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "42"
    assert out["details"]["votes"] == {"42": 3, "41": 1}
    assert out["details"]["samples_drawn"] == 4
    assert request.body["n"] == 4


# -- the real embedded model -------------------------------------------------------------------------


@pytest.mark.slow
async def test_four_samples_on_the_embedded_model(local_backend) -> None:  # type: ignore[no-untyped-def]
    solution = await sc(samples=4, inner="few-shot-cot", max_tokens=64, seed=1).solve(
        "Tom has 3 apples and buys 4 more. How many apples does he have?", local_backend
    )
    assert solution.error is None
    d = solution.details
    assert d["samples_drawn"] == 4 and len(d["answers"]) == 4 and sum(d["votes"].values()) == 4
    assert solution.usage.calls == 1  # one merged request with n=4
    nodes = {n["id"]: n for n in solution.trace["nodes"]}
    assert nodes["sample0/reason"]["merged"]["n"] == 4
    assert solution.answer in d["answers"]


async def test_a_failed_sample_costs_one_vote_not_the_question() -> None:
    from reasoner.testing.scripted import ScriptedBackend
    from reasoner.strategies.self_consistency import SelfConsistency

    def reply(request, i):  # type: ignore[no-untyped-def]
        if i == 1:
            raise RuntimeError("server hiccup")
        return "The answer is 7."

    backend = ScriptedBackend([("Q: What", reply)], supports_n=False)
    solution = await SelfConsistency(samples=4, inner="zero-shot-cot").solve("What is 3 + 4?", backend)
    assert solution.error is None and solution.answer == "7"
    assert solution.details["failed_samples"] == 1 and solution.details["samples_drawn"] == 4
