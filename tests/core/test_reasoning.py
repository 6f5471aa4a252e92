"""Reasoning models: the thinking kept apart from the answer on every path (whole and streamed
answers, the budget, the bank, the trace), counted apart, and never scored as the answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from reasoner.answers import extract_answer
from reasoner.backends.http import OpenAIBackend
from reasoner.backends.openai_protocol import StreamReader
from reasoner.backends.spec import open_backend
from reasoner.backends.thinking import ThinkSplitter, ThinkTags, split_think
from reasoner.bank import SampleBank
from reasoner.simulators.thinking import Thinker, decoy
from reasoner.strategy import get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.trace import render_tree
from reasoner.types import GenerationRequest, Message

REPLY = "Tom has 3 apples and buys 4 more, so 3 + 4 = 7.\nThe answer is 7."
THINKER = Thinker(lambda body, index: REPLY)
ASK = GenerationRequest(messages=(Message(role="user", content="How many apples?"),), max_tokens=200)


@pytest.fixture(scope="module")
def parser_server() -> Iterator[FakeOpenAIServer]:
    """A server with a reasoning parser, sending the thinking as `reasoning_content`."""
    with FakeOpenAIServer(responder=THINKER.respond, reasoning_field="reasoning_content") as server:
        yield server


@pytest.fixture(scope="module")
def plain_server() -> Iterator[FakeOpenAIServer]:
    """The same model behind a server without a parser: `<think>` stays in the text."""
    with FakeOpenAIServer(responder=THINKER.respond) as server:
        yield server


def test_the_decoy_is_an_answer_the_reply_does_not_give() -> None:
    # What the tests below rely on: a client reading the thought would score another number.
    thought = THINKER.thought(REPLY)
    assert extract_answer(REPLY) == "7"
    assert extract_answer(thought) == decoy(REPLY) == "24"


async def test_a_whole_answer_keeps_reasoning_apart_and_counts_it_as_reported(parser_server: FakeOpenAIServer) -> None:
    async with OpenAIBackend(parser_server.base_url, "fake-model") as backend:
        completion = await backend.generate(ASK)
    (choice,) = completion.choices
    assert choice.text == REPLY
    assert choice.reasoning == THINKER.thought(REPLY)
    assert choice.reasoning_tokens == len(THINKER.thought(REPLY).split()) == 24
    assert choice.reasoning_count == "reported"
    # Servers count the thinking inside completion tokens; it is a part of them, not added.
    assert completion.completion_tokens == 24 + len(REPLY.split())
    assert extract_answer(completion.text) == "7"


async def test_a_stream_sends_reasoning_in_chunks_of_its_own(parser_server: FakeOpenAIServer) -> None:
    async with OpenAIBackend(parser_server.base_url, "fake-model") as backend:
        chunks = [chunk async for chunk in backend.stream(ASK)]
    *pieces, last = chunks
    assert "".join(c.text for c in pieces) == REPLY
    assert "".join(c.reasoning for c in pieces) == THINKER.thought(REPLY)
    assert not any(c.text and c.reasoning for c in pieces)  # never one piece of both
    assert last.completion is not None
    choice = last.completion.choices[0]
    assert (choice.text, choice.reasoning) == (REPLY, THINKER.thought(REPLY))
    assert (choice.reasoning_tokens, choice.reasoning_count) == (24, "reported")


def _event(delta: dict[str, Any], finish: str | None = None) -> str:
    return "data: " + json.dumps({"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_vllms_reasoning_field_is_read_and_counted_per_event_without_usage() -> None:
    reader = StreamReader(chat=True)
    for line in (_event({"reasoning": "Maybe 9"}), _event({"reasoning": " no."}), _event({"content": "It is 4."}, "stop")):
        reader.feed(line)
    choice = reader.completion(0.0).choices[0]
    assert (choice.text, choice.reasoning) == ("It is 4.", "Maybe 9 no.")
    assert (choice.reasoning_tokens, choice.reasoning_count, choice.completion_tokens) == (2, "counted", 3)


def test_a_delta_that_ends_the_thinking_keeps_both_parts() -> None:
    reader = StreamReader(chat=True)
    chunks = reader.feed(_event({"reasoning": "so 4", "content": "It is 4."}, "stop"))
    assert [(c.reasoning, c.text) for c in chunks] == [("so 4", "It is 4.")]
    choice = reader.completion(0.0).choices[0]
    assert (choice.reasoning, choice.text) == ("so 4", "It is 4.")


async def test_a_budget_goes_out_only_where_the_backend_declares_it(
    parser_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    budgeted = ASK.model_copy(update={"max_reasoning_tokens": 5, "reasoning_effort": "low"})
    parser_server.reset()
    async with OpenAIBackend(parser_server.base_url, "fake-model", reasoning_controls=("budget", "effort")) as backend:
        cut = await backend.generate(budgeted)
    sent = parser_server.completion_requests()[-1].body
    assert (sent["thinking_token_budget"], sent["reasoning_effort"]) == (5, "low")
    assert cut.choices[0].reasoning_tokens == 5 and cut.choices[0].reasoning == " ".join(THINKER.thought(REPLY).split()[:5])
    assert cut.text == REPLY  # the thought is cut; the answer still follows it

    with caplog.at_level(logging.WARNING):
        async with OpenAIBackend(parser_server.base_url, "fake-model") as backend:
            assert backend.reasoning_controls == frozenset()
            whole = await backend.generate(budgeted)
    sent = parser_server.completion_requests()[-1].body
    assert "thinking_token_budget" not in sent and "reasoning_effort" not in sent
    assert whole.choices[0].reasoning_tokens == 24
    assert "thinking budget" in caplog.text and "thinking effort" in caplog.text


async def test_a_budget_the_server_cannot_honour_is_refused_by_it(plain_server: FakeOpenAIServer) -> None:
    # As vLLM refuses thinking_token_budget without --reasoning-parser: declaring it is the user's claim.
    from reasoner.backends.errors import BadRequestError

    async with OpenAIBackend(plain_server.base_url, "fake-model", reasoning_controls=("budget",), max_attempts=1) as backend:
        with pytest.raises(BadRequestError, match="no reasoning parser"):
            await backend.generate(ASK.model_copy(update={"max_reasoning_tokens": 3}))


def test_unknown_reasoning_controls_are_named() -> None:
    from reasoner.backends.errors import BackendError

    with pytest.raises(BackendError, match="unknown tokens; the controls are 'effort' and 'budget'"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", reasoning_controls=("tokens",))


async def test_a_thought_cut_off_before_its_end_is_no_answer() -> None:
    # The thought names 24 and never closes: a client that read it as text would answer 24.
    unclosed = Thinker(lambda body, index: REPLY, closed=False)
    with FakeOpenAIServer(responder=unclosed.respond, reasoning_field="reasoning") as server:
        async with OpenAIBackend(server.base_url, "fake-model") as backend:
            solution = await get_strategy("zero-shot-cot", max_tokens=200).solve("How many apples?", backend)
    assert solution.answer is None
    models = [n for n in solution.trace["nodes"] if n["kind"] == "model"]
    assert models and all("answer is 24" in n["output"]["choices"][0]["reasoning"] for n in models)
    assert all(n["output"]["choices"][0]["text"] == "" for n in models)


async def test_strategies_score_the_content_and_the_trace_keeps_the_thought(parser_server: FakeOpenAIServer) -> None:
    async with OpenAIBackend(parser_server.base_url, "fake-model") as backend:
        solution = await get_strategy("self-consistency", samples=3, temperature=0.7).solve("How many apples?", backend)
    assert solution.answer == "7"
    models = [n for n in solution.trace["nodes"] if n["kind"] == "model"]
    assert models and all(n["reasoning_tokens"] == 24 * len(n["output"]["choices"]) for n in models)
    for node in models:
        for choice in node["output"]["choices"]:
            assert "answer is 24" in choice["reasoning"] and "24" not in choice["text"]
    assert solution.usage.reasoning_tokens == 3 * 24
    assert solution.usage.completion_tokens == 3 * (24 + len(REPLY.split()))
    console = Console(width=200, record=True)
    console.print(render_tree(solution.trace))
    shown = console.export_text()
    assert "(24 thinking)" in shown and "[thought: First guess: the answer is 24." in shown


async def test_the_bank_replays_the_reasoning(parser_server: FakeOpenAIServer, tmp_path: Path) -> None:
    seeded = ASK.model_copy(update={"seed": 1, "n": 2, "temperature": 0.7})
    async with OpenAIBackend(parser_server.base_url, "fake-model") as backend:
        recorded = await SampleBank(backend, tmp_path / "bank.db").generate(seeded)
        replay = SampleBank(backend, tmp_path / "bank.db", mode="replay")
        again = await replay.generate(seeded)
    assert [(c.reasoning, c.reasoning_tokens, c.reasoning_count) for c in again.choices] == [
        (c.reasoning, c.reasoning_tokens, c.reasoning_count) for c in recorded.choices
    ]
    assert again.reasoning_tokens == 48 and again.text == REPLY


def test_unset_budget_fields_leave_request_keys_as_they_were() -> None:
    # A bank recorded before the budget existed still matches its requests.
    from reasoner.bank import request_key

    _, text = request_key("m", ASK)
    assert "reasoning" not in text
    assert ASK.merge_key() != ASK.model_copy(update={"max_reasoning_tokens": 9}).merge_key()


@pytest.mark.parametrize("cut", [1, 3, 6, 9])
def test_the_splitter_holds_a_tag_cut_between_pieces(cut: int) -> None:
    text = "<think>maybe 9</think>It is 4."
    splitter = ThinkSplitter()
    parts = [splitter.feed(text[i : i + cut]) for i in range(0, len(text), cut)] + [splitter.flush()]
    assert ("".join(r for r, _ in parts), "".join(c for _, c in parts)) == ("maybe 9", "It is 4.")


def test_split_think_cases() -> None:
    assert split_think("no tags, 5") == (None, "no tags, 5")
    assert split_think("<think>hmm 3</think> It is 4.") == ("hmm 3", "It is 4.")
    assert split_think("<think>cut off at 3") == ("cut off at 3", "")  # a half thought is no answer
    assert split_think("hmm 3</think>It is 4.", thinking=True) == ("hmm 3", "It is 4.")  # template opened it
    assert split_think("a < b, and <thin is not a tag") == (None, "a < b, and <thin is not a tag")


@pytest.mark.parametrize("stream", [False, True])
async def test_think_tags_split_a_model_that_thinks_inline(plain_server: FakeOpenAIServer, stream: bool) -> None:
    backend = await open_backend(plain_server.base_url, model_name="fake-model", think_tags="inline")
    async with backend:
        assert isinstance(backend, ThinkTags)
        if stream:
            chunks = [c async for c in backend.stream(ASK)]
            assert "".join(c.reasoning for c in chunks) == THINKER.thought(REPLY)
            assert "<think>" not in "".join(c.text for c in chunks)
            completion = chunks[-1].completion
        else:
            completion = await backend.generate(ASK)
    assert completion is not None
    choice = completion.choices[0]
    assert (choice.text, choice.reasoning) == (REPLY, THINKER.thought(REPLY))
    assert choice.reasoning_count == "estimated" and 0 < (choice.reasoning_tokens or 0) < completion.completion_tokens


async def test_think_tags_option_is_checked() -> None:
    from reasoner.backends.errors import BackendError

    with pytest.raises(BackendError, match="think_tags must be one of inline, opened, got 'yes'"):
        await open_backend("http://127.0.0.1:9/v1", model_name="m", think_tags="yes")


def test_the_strategy_budget_reaches_its_requests() -> None:
    strategy = get_strategy("zero-shot-cot", max_reasoning_tokens=64, reasoning_effort="high")
    request = strategy.request("q")
    assert (request.max_reasoning_tokens, request.reasoning_effort) == (64, "high")
    assert "max_reasoning_tokens" not in get_strategy("zero-shot-cot").settings()


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
async def test_the_embedded_model_thinking_inline_is_split(local_backend, stream: bool) -> None:  # type: ignore[no-untyped-def]
    # SmolLM2 writes no tags of its own: the prefill opens the thought, as DeepSeek-R1's template does.
    opened = (Message(role="user", content="What is 2 + 2?"), Message(role="assistant", content="<think>"))
    request = GenerationRequest(messages=opened, max_tokens=24)
    raw = (await local_backend.generate(request)).text
    wrapped = ThinkTags(local_backend, thinking=True)  # not closed after: the session's model stays loaded
    if stream:
        chunks = [c async for c in wrapped.stream(request)]
        completion = chunks[-1].completion
        assert "".join(c.reasoning for c in chunks[:-1]).strip() == split_think(raw, thinking=True)[0]
    else:
        completion = await wrapped.generate(request)
    assert completion is not None
    choice = completion.choices[0]
    assert (choice.reasoning, choice.text) == split_think(raw, thinking=True) and choice.reasoning
    assert choice.reasoning_count == "estimated" and (choice.reasoning_tokens or 0) > 0
