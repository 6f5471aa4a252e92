"""Best-of-N and DIVERSE: samples scored by a verifier, the best one or a weighted vote wins."""

from __future__ import annotations

import pytest

from reasoner.strategy import get_strategy
from reasoner.testing.scripted import Rule, ScriptedBackend

QUESTION = "Janet's ducks lay 16 eggs a day; she eats 3, bakes with 4 and sells the rest at $2. How much does she make?"
RIGHT = "She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = 18 dollars.\nThe answer is 18."
SLIP = "She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = 19 dollars.\nThe answer is 19."


async def test_best_of_n_picks_the_sample_the_checker_passes() -> None:
    backend = ScriptedBackend([(r"Q: Janet", [SLIP, SLIP, RIGHT, SLIP])])
    solution = await get_strategy("best-of-n", samples=4, seed=3).solve(QUESTION, backend)
    assert solution.answer == "18"
    assert solution.details["scores"] == [0.0, 0.0, 1.0, 0.0] and solution.details["chosen"] == 2
    assert solution.details["first_errors"] == [1, 1, None, 1]
    assert [r.n for r in backend.requests] == [4]  # the N samples are one request
    verify = [n for n in solution.trace["nodes"] if n["label"] == "verify"]
    assert len(verify) == 4 and all(n["kind"] == "tool" for n in verify)


async def test_best_of_n_ties_go_to_the_commoner_answer() -> None:
    other = "She makes 7 * 2 = 14 dollars.\nThe answer is 14."
    backend = ScriptedBackend([(r"Q: Janet", [other, RIGHT, RIGHT])])
    solution = await get_strategy("best-of-n", samples=3).solve(QUESTION, backend)
    assert solution.answer == "18" and solution.details["chosen"] == 1


async def test_best_of_n_with_the_judge_aggregates_step_scores() -> None:
    backend = ScriptedBackend(
        [
            Rule(r"Step 2: She makes 9 \* 2 = 19[^\n]*\n\nIs the last step", "No", logprob=-0.05),
            Rule(r"Is the last step", "Yes", logprob=-0.3),
            Rule(r"Q: Janet", [SLIP, RIGHT]),
        ]
    )
    for how in ("min", "product"):
        solution = await get_strategy("best-of-n", samples=2, verifier="judge", aggregate=how).solve(QUESTION, backend)
        assert solution.answer == "18", how
    # Three steps judged per sample, 6 verdicts, but both samples' first steps are the same prompt,
    # which the engine serves as one request with n=2: 5 requests, plus the one sampling request.
    assert solution.usage.calls == 6
    # `last` sees only the answer lines, both judged right: a tie, which goes to the first sample.
    last = await get_strategy("best-of-n", samples=2, verifier="judge", aggregate="last").solve(QUESTION, backend)
    assert last.details["scores"][0] == last.details["scores"][1] and last.answer == "19"


async def test_best_of_n_says_so_when_every_verification_fails() -> None:
    backend = ScriptedBackend([(r"Q: Janet", [RIGHT])])  # no rule answers the judge
    solution = await get_strategy("best-of-n", samples=2, verifier="judge").solve(QUESTION, backend)
    assert solution.answer is None and "every sample or its verification failed" in (solution.error or "")


def test_bad_options_name_themselves() -> None:
    with pytest.raises(ValueError, match="unknown verifier 'oracle'"):
        get_strategy("best-of-n", verifier="oracle")
    with pytest.raises(ValueError, match="unknown inner strategy 'nope'"):
        get_strategy("best-of-n", inner="nope")
    with pytest.raises(ValueError, match="aggregate"):
        get_strategy("beam-search", aggregate="mean")


async def test_diverse_weighted_vote_beats_the_majority_of_slips() -> None:
    replies = [SLIP, SLIP, RIGHT, SLIP, RIGHT, SLIP]
    weighted = ScriptedBackend([(r"Q: Janet", replies)])
    solution = await get_strategy("diverse", prompts=3, samples=2, pool="shipped", k=3).solve(QUESTION, weighted)
    assert solution.answer == "18" and solution.details["totals"] == {"19": 0.0, "18": 2.0}
    prompts = {r.prompt for r in weighted.requests}
    assert len(weighted.requests) == 3 and len(prompts) == 3  # three distinct exemplar sets, n=2 each
    assert all(r.n == 2 for r in weighted.requests)
    plain = ScriptedBackend([(r"Q: Janet", replies)])
    majority = await get_strategy("diverse", prompts=3, samples=2, pool="shipped", k=3, vote="majority").solve(QUESTION, plain)
    assert majority.answer == "19"


async def test_diverse_draws_exemplars_from_the_train_split() -> None:
    strategy = get_strategy("diverse", prompts=2, k=4)
    first, second = strategy.exemplars(0), strategy.exemplars(1)  # type: ignore[attr-defined]
    assert len(first) == 4 and {e.question for e in first} != {e.question for e in second}
    with pytest.raises(ValueError, match="k=9 exemplars asked for, the shipped pool has 8"):
        get_strategy("diverse", pool="shipped", k=9).exemplars(0)  # type: ignore[attr-defined]


async def test_diverse_prompts_sample_with_seeds_of_their_own() -> None:
    backend = ScriptedBackend([(r"Q: Janet", [RIGHT])])
    await get_strategy("diverse", prompts=3, samples=2, pool="shipped", k=2, seed=10).solve(QUESTION, backend)
    assert sorted(r.seed for r in backend.requests) == [10, 12, 14]


async def test_diverse_a_failed_prompt_costs_its_paths_and_all_failing_names_the_cause() -> None:
    def reply(request, i: int) -> str:  # type: ignore[no-untyped-def]
        if request.seed == 12:  # the second prompt's request
            raise ConnectionError("server went away")
        return RIGHT

    backend = ScriptedBackend([Rule(r"Q: Janet", reply)])
    solution = await get_strategy("diverse", prompts=3, samples=2, pool="shipped", k=2, seed=10).solve(QUESTION, backend)
    assert solution.error is None and solution.answer == "18"
    assert solution.details["paths"] == 4 and solution.details["failed_paths"] == 2
    verify = [n for n in solution.trace["nodes"] if n["label"] == "verify"]
    assert sorted(n["id"].rsplit("/", 1)[0] for n in verify) == [f"prompt{m}/path{s}" for m in (0, 2) for s in (0, 1)]
    down = ScriptedBackend([Rule(r"Q: Janet", lambda request, i: (_ for _ in ()).throw(ConnectionError("server went away")))])
    failed = await get_strategy("diverse", prompts=2, samples=2, pool="shipped", k=2).solve(QUESTION, down)
    assert failed.error and "every path or its verification failed" in failed.error and "server went away" in failed.error
