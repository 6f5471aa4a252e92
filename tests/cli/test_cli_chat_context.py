"""`reasoner chat` keeps the conversation inside the model's context window."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from reasoner.cli import context
from reasoner.cli.chat import Chat
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import GenerationRequest


def long_question(i: int) -> str:
    # Digits are a token each for SmolLM2, so this is ~250 tokens, well past 4 characters a token.
    numbers = ", ".join(str(1000 + 37 * j + i) for j in range(45))
    return f"Turn {i}: here are some numbers: {numbers}. What is the first one plus {i}?"


def chat_on(backend, console_out: io.StringIO, **options) -> Chat:  # type: ignore[no-untyped-def]
    chat = Chat("local", None, "zero-shot-cot", [], None, console=Console(file=console_out, width=120),
                options={"max_tokens": 24, **options})
    chat.backend = backend
    return chat


def test_fit_keeps_the_newest_turns_and_the_current_message() -> None:
    class T:
        def __init__(self, q: str, text: str) -> None:
            self.question, self.text = q, text

    history = [T(f"q{i}", "x " * 50) for i in range(10)]
    count = context.estimate_tokens
    fitted = context.fit(history, "now?", 200, count)
    assert 0 < fitted.kept < 10 and fitted.dropped == 10 - fitted.kept
    assert count(fitted.prompt) <= 200 and fitted.prompt.endswith("now?")
    assert "User: q9" in fitted.prompt and "User: q0" not in fitted.prompt
    # Nothing fits: the message alone still goes.
    assert context.fit(history, "now?", 1, count).prompt == "now?"


def test_the_strategy_prompt_and_its_steps_are_left_room() -> None:
    from reasoner.strategy import get_strategy

    backend = ScriptedBackend([], default=" The answer is 1.")
    few = get_strategy("few-shot-cot", max_tokens=100)
    overhead = asyncio.run(context.strategy_overhead(few, "What is 1 plus 1?", backend, context.estimate_tokens))
    assert overhead > 500  # eight worked exemplars
    react = get_strategy("react", max_tokens=100, max_steps=4, mode="text")
    assert context.generation_reserve(react) == 4 * (100 + context.OBSERVATION_TOKENS)
    assert context.generation_reserve(few) == 100


@pytest.mark.parametrize("name", ["flowchart", "pal"])
def test_a_turn_that_falls_back_to_chain_of_thought_is_left_room_for_its_exemplars(name: str) -> None:
    from reasoner.strategy import get_strategy

    def overhead(strategy) -> int:  # type: ignore[no-untyped-def]
        return asyncio.run(context.strategy_overhead(strategy, "What is 1 plus 1?", ScriptedBackend([]), context.estimate_tokens))

    cot = overhead(get_strategy("few-shot-cot"))
    alone = overhead(get_strategy(name, form="program", fallback="none") if name == "flowchart" else get_strategy(name, fallback="none"))
    assert alone < cot  # its own first prompt is the shorter: its fallback's decides the room left
    assert overhead(get_strategy(name)) == cot
    assert context.generation_reserve(get_strategy(name, fallback="few-shot-cot", max_tokens=900)) == 900


def test_ten_turns_on_a_small_window_say_when_history_is_dropped() -> None:
    seen: list[GenerationRequest] = []

    def reply(request: GenerationRequest, i: int) -> str:
        seen.append(request)
        return " Let me add them. The answer is 1000."

    out = io.StringIO()
    chat = chat_on(ScriptedBackend([(".", reply)]), out)
    chat.context_tokens = 1200
    for i in range(10):
        turn = asyncio.run(chat.turn(long_question(i)))
        chat.session.turns.append(turn)
        assert turn.error is None
    screen = out.getvalue()
    assert "left out to fit the model's 1200-token context window" in screen
    assert max(context.estimate_tokens(r.as_text()) for r in seen) <= 1200 - 24


@pytest.mark.slow
def test_ten_turns_on_the_embedded_model_stay_in_its_window(local_backend) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    chat = chat_on(local_backend, out)
    for i in range(10):
        turn = asyncio.run(chat.turn(long_question(i)))
        assert turn.error is None, turn.error  # was: "Requested tokens (…) exceed context window of 2048"
        chat.session.turns.append(turn)
    screen = out.getvalue()
    assert f"left out to fit the model's {local_backend.n_ctx}-token context window" in screen


@pytest.mark.parametrize("fallback, said", [("few-shot-cot", "pal fell back to few-shot-cot: "), ("none", "pal gave no answer: ")])
def test_a_turn_that_falls_back_says_why(fallback: str, said: str) -> None:
    out = io.StringIO()
    backend = ScriptedBackend([(r"def solution\(\):\n$", "    return 12 / 0\n"), (r"A:$", " 12 - 2 = 10.\nThe answer is 10.")])
    chat = Chat("local", None, "pal", [], None, console=Console(file=out, width=200), options={"fallback": fallback})
    chat.backend = backend
    asyncio.run(chat.turn("Sam has 12 apples and eats 2. How many are left?"))
    line = next(line for line in out.getvalue().splitlines() if said in line)
    assert line.endswith("ZeroDivisionError: division by zero")
