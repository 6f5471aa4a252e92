"""Every strategy against llama-cpp-python's own OpenAI-compatible server (`python -m
llama_cpp.server`, a server people run) with the embedded SmolLM2: it ignores `n`, refuses
`response_format` json_schema with a 500 and sends no usage in streams, and each strategy must
still run to an answer or "no answer", never an error. One server per module, small max_tokens."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import reasoner
from reasoner.backends.http import OpenAIBackend
from reasoner.backends.spec import open_backend
from reasoner.strategy import get_strategy
from reasoner.types import GenerationRequest

pytestmark = pytest.mark.slow

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
# Small searches, so that the whole module stays within a few minutes on 2 cores.
SMALL: dict[str, dict[str, Any]] = {
    "self-consistency": {"samples": 3},
    "best-of-n": {"samples": 2},
    "diverse": {"prompts": 2, "samples": 2, "pool": "shipped"},
    "tree-of-thought": {"breadth": 2, "depth": 1, "candidates": 2, "n_evaluate": 1, "eval_max_tokens": 8},
    "beam-search": {"width": 2, "expansions": 2, "depth": 1},
    "react": {"max_steps": 2, "answer_max_tokens": 16},
    "least-to-most": {"max_subquestions": 2, "decompose_max_tokens": 48},
    "plan-dag": {"max_subquestions": 2, "plan_max_tokens": 64},
    "backtrack": {"retries": 2, "max_backtracks": 1},
    "mcts": {"iterations": 3, "children": 2, "depth": 2},
    "particle-filter": {"particles": 2, "depth": 2},
    "refine": {"rounds": 1, "critique_max_tokens": 24},
    "aggregate": {"candidates": 2},
    "mixture": {"samples": 2},
    "flowchart": {"chart_max_tokens": 96, "step_max_tokens": 16, "max_steps": 4},
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("needs llama-cpp-python and its server packages (the `local` and `dev` extras)")
    from reasoner.backends.local import default_gguf

    port = _free_port()
    threads = os.environ.get("REASONER_THREADS", "2")  # as the embedded backend reads it
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_gguf()), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "4096", "--n_threads", threads, "--verbose", "false"]  # fmt: skip
    # Its log goes to a file: an unread pipe would fill up and block the server mid-test.
    log = (tmp_path_factory.mktemp("llama_server") / "server.log").open("w+b")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"llama_cpp.server exited: {log.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
async def served(llama_server: str) -> AsyncIterator[OpenAIBackend]:
    # The server answers one request at a time: more in flight would only queue there, silent,
    # and a queued request may wait longer than the default stall timeout on a busy machine.
    backend = await open_backend(llama_server, max_in_flight=1, stall_timeout_s=600.0, deadline_s=900.0)
    assert isinstance(backend, OpenAIBackend)
    yield backend
    await backend.aclose()


@pytest.mark.parametrize("name", sorted(reasoner.available()))
async def test_every_strategy_runs_to_an_answer_or_no_answer(served: OpenAIBackend, name: str) -> None:
    options = {"max_tokens": 32, **SMALL.get(name, {})}
    if "k" in reasoner.available()[name].model_fields:
        options.setdefault("k", 2)  # two worked examples, not eight: a short prompt to evaluate
    strategy = get_strategy(name, **options)
    solution = await strategy.solve(QUESTION, served)
    assert solution.error is None, f"{name}: {solution.error}"
    assert solution.usage.calls >= 1


async def test_what_the_server_lacks_is_learned(served: OpenAIBackend) -> None:
    samples = await served.generate(GenerationRequest(prompt=QUESTION, n=3, temperature=0.8, max_tokens=4, seed=1))
    assert len(samples.choices) == 3
    assert served.supports_n is False  # llama_cpp.server answers one choice whatever `n` asks

    schema = {"type": "object", "properties": {"answer": {"type": "number"}}}
    shaped = await served.generate(GenerationRequest(prompt=QUESTION, json_schema=schema, max_tokens=8))
    assert shaped.choices  # asked again without the schema it refuses with a 500
    assert served.supports_json_schema is False


async def test_streaming_from_the_real_server(served: OpenAIBackend) -> None:
    chunks = [c async for c in served.stream(GenerationRequest(prompt=QUESTION, max_tokens=8))]
    *pieces, last = chunks
    assert last.completion is not None and pieces
    assert "".join(c.text for c in pieces) == last.completion.text
    assert last.completion.completion_tokens == len(pieces)  # no usage event: one token per event

    stream = served.stream(GenerationRequest(prompt=QUESTION, max_tokens=200))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert served.router.replicas[0].in_flight == 0
    assert (await served.generate(GenerationRequest(prompt="Say hi.", max_tokens=4))).choices
