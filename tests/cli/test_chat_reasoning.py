"""`reasoner chat` and a reasoning model: a turn shows the thinking dim and apart, the answer from
the content, and the thinking tokens in the status line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rich.console import Console

from reasoner.cli.chat import Chat
from reasoner.simulators.thinking import Thinker
from reasoner.testing.fake_openai import FakeOpenAIServer

REPLY = "6 times 7 is 42. The answer is 42."


@pytest.fixture(scope="module")
def thinking_server() -> Iterator[FakeOpenAIServer]:
    thinker = Thinker(lambda body, index: REPLY)
    with FakeOpenAIServer(responder=thinker.respond, reasoning_field="reasoning_content") as server:
        yield server


async def test_a_turn_shows_the_thinking_apart_from_the_answer(thinking_server: FakeOpenAIServer) -> None:
    console = Console(width=200, record=True, color_system=None)
    chat = Chat(thinking_server.base_url, "fake-model", "few-shot-cot", [], None, console=console)
    try:
        turn = await chat.turn("What is 6 times 7?")
    finally:
        if chat.backend is not None:
            await chat.backend.aclose()
    shown = console.export_text()
    assert turn.answer == "42" and "59" not in turn.text  # the thought's decoy (42 + 17) is not the answer
    thinking = next(line for line in shown.splitlines() if "thinking (" in line)
    assert "First guess: the answer is 59." in thinking and "/trace keeps it" in thinking
    assert "(24 thinking)" in shown
