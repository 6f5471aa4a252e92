"""Siblings that share a prompt still go out as one request with `n`, for every strategy that samples
them: the requests the simulated server received, the samples they asked for and the answers, per
strategy, are those measured on the code before strategies were written in direct style
(commit 4c17a94, `python -m reasoner.bench.measure.sibling_requests`: the same table)."""

from __future__ import annotations

import pytest

from reasoner.bench.measure.sibling_requests import CASES, measure

#: label: (requests, samples asked for, answers), measured on 4c17a94 with the same script.
BEFORE = {
    "self-consistency@8": (6, 48, ["18", "3", "70000", "540", "20", "64"]),
    "self-consistency dirichlet": (41, 53, ["18", "3", "70000", "540", "20", "64"]),
    "self-consistency verifier-weighted": (6, 36, ["18", "3", "170000", "540", "20", "64"]),
    "best-of-n@6": (6, 36, ["18", "3", "170000", "540", "20", "64"]),
    "diverse 3x2": (18, 36, ["18", "3", "170000", "540", "20", "32"]),
    "beam-search 2x3": (40, 138, ["18", "4", "230000", "540", "20", "64"]),
    "beam-search dvts 3x2": (57, 138, ["18", "3", "70000", "540", "20", "64"]),
    "tree-of-thought": (96, 288, ["18", "4", "2000000", "540", "20", "29"]),
    "backtrack": (14, 26, ["18", "4", "170000", "540", "20", "64"]),
}
#: Strategies written after the port (so with no "before"), measured when their rows were added
#: (commit after afa517b): a change that stops their siblings merging changes these counts. On
#: this step-level simulator flowchart's charts do not parse, so its rows are its fallback's.
LATER = {
    "mcts": (57, 99, ["18", "3", "70000", "540", "20", "118"]),
    "particle-filter 4": (60, 92, ["18", "3", "230000", "540", "20", "64"]),
    "aggregate 4": (12, 30, ["18", "4", "170000", "550", "19", "280"]),
    "mixture self 3": (12, 24, ["18", "4", "170000", "550", "19", "280"]),
    "self-consistency of flowchart": (12, 48, ["18", "3", "170000", "540", "20", "64"]),
}


@pytest.fixture(scope="module")
def now() -> dict[str, tuple[int, int, list[str | None]]]:
    return measure(n_questions=6, seed=0)


def test_every_sibling_sampling_strategy_is_measured() -> None:
    assert [label for label, _, _ in CASES] == [*BEFORE, *LATER]


@pytest.mark.parametrize("label", [*BEFORE, *LATER])
def test_requests_and_samples_are_what_they_were_before_the_port(now: dict[str, tuple[int, int, list[str | None]]], label: str) -> None:
    requests, samples, answers = now[label]
    assert (requests, samples, answers) == {**BEFORE, **LATER}[label]
    assert samples > requests  # siblings did share requests
