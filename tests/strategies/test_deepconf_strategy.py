"""DeepConf as a strategy: reachable by name, its answer records every trace, its one streaming
node is billed the requests and tokens, which reach the solution's usage; on the simulated backend
and the real embedded model."""

from __future__ import annotations

import pytest

from reasoner.strategies.deepconf import DeepConf
from reasoner.strategy import available, get_strategy
from reasoner.simulators.samples import SimulatedBackend, SimulatedModel


def test_registered_under_its_name() -> None:
    assert available()["deepconf"] is DeepConf
    strategy = get_strategy("deepconf", samples=8, warmup=3)
    assert isinstance(strategy, DeepConf) and strategy.settings_for_run().warmup == 3


async def test_on_the_simulated_model_the_node_records_each_trace() -> None:
    model = SimulatedModel(0)
    backend = SimulatedBackend(model)
    strategy = get_strategy("deepconf", samples=12, warmup=4, seed=0)
    # Question 5's traces include confident and unconfident ones (seen in its first 12 samples).
    cut_somewhere = False
    for q in range(5):
        solution = await strategy.solve(model.question_text(q), backend)
        assert solution.error is None
        details = solution.details
        traces = details["traces"]
        assert 4 <= details["samples_drawn"] == len(traces) <= 12
        # The first four are the warm-up, drawn whole: their token counts are the samples' lengths.
        assert [t["tokens"] for t in traces[:4]] == [len(model.sample(q, i).token_logprobs) for i in range(4)]
        for t in traces:
            if t["cut"] and t["tokens"] < 100:
                cut_somewhere = True
                assert t["confidence"] < details["threshold"] and t["answer"] is None
        assert solution.usage.completion_tokens == details["generated_tokens"] == sum(t["tokens"] for t in traces)
        assert solution.usage.calls == 1 + len(traces) - 4 and solution.usage.prompt_tokens > 0
        (node,) = [n for n in solution.trace["nodes"] if n["label"] == "deepconf"]
        assert node["output"]["details"]["traces"] == traces  # the trace is the graph's
        # The strategy's node made no model call itself: its one stream node streamed them all.
        (stream,) = [n for n in solution.trace["nodes"] if n["label"] == "stream"]
        assert stream["kind"] == "tool" and stream["request"]["logprobs"] is True
        assert (stream["calls"], stream["completion_tokens"]) == (solution.usage.calls, solution.usage.completion_tokens)
        assert stream["output"]["traces"] == len(traces) and not [n for n in solution.trace["nodes"] if n["kind"] == "model"]
        if solution.answer is not None:
            assert any(t["answer"] == solution.answer and not t["cut"] for t in traces)
    assert cut_somewhere


async def test_inside_another_strategy_it_streams_from_the_engines_backend() -> None:
    # Before `run.online`, the backend reached DeepConf through `DeepConf.solve` only, so as an
    # inner strategy it failed ("run it with DeepConf.solve").
    model = SimulatedModel(0)
    sc = get_strategy("self-consistency", inner="deepconf", samples=2, seed=0)
    solution = await sc.solve(model.question_text(0), SimulatedBackend(model))
    assert solution.error is None
    streams = [n for n in solution.trace["nodes"] if n["label"] == "stream"]
    assert len(streams) == 2 and all(n["status"] == "done" and n["calls"] >= 1 for n in streams)
    assert solution.usage.calls == sum(n["calls"] for n in streams)


async def test_on_the_embedded_model(local_backend) -> None:  # type: ignore[no-untyped-def]
    strategy = get_strategy("deepconf", samples=3, warmup=2, max_tokens=24, k=1, window=8, seed=1)
    solution = await strategy.solve("What is 12 + 30?", local_backend)
    assert solution.error is None
    traces = solution.details["traces"]
    assert 2 <= len(traces) <= 3
    assert all(0 < t["tokens"] <= 24 and t["confidence"] < 0 for t in traces)
    assert all(t["text"] for t in traces[:2])
    assert solution.usage.completion_tokens == sum(t["tokens"] for t in traces)


async def test_a_backend_without_log_probabilities_gets_plain_self_consistency() -> None:
    # llama.cpp's own server returns no log-probabilities unless started with logits_all: DeepConf
    # then has nothing to cut by, and votes every trace (it failed the question before).
    from reasoner.testing.scripted import Rule, ScriptedBackend

    backend = ScriptedBackend([Rule(".", ["The answer is 7.", "The answer is 7.", "The answer is 9."])])
    solution = await get_strategy("deepconf", samples=6, warmup=3, seed=0).solve("What is 3 + 4?", backend)
    assert solution.error is None and solution.answer == "7"
    details = solution.details
    assert details["fallback"] == "self-consistency" and "no token log-probabilities" in details["fallback_reason"]
    assert details["samples_drawn"] == 6 and details["cut_traces"] == 0
    assert details["votes"] == {"7": 4, "9": 2}
