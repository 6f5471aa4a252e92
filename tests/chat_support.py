"""A chat over several turns, as `reasoner chat` holds it, for tests of a strategy in the chat."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from reasoner.cli.chat import Chat
from reasoner.data import Problem
from reasoner.testing.fake_openai import FakeOpenAIServer


async def prompts_over_turns(server: FakeOpenAIServer, strategy: str, problems: Sequence[Problem], options: dict[str, Any]) -> list[str]:
    """Each problem asked in turn (each answered with its gold answer, or the test fails); the
    prompts the server saw in the last turn, every message of each joined."""
    chat = Chat(server.base_url, "fake-model", strategy, [], None, console=Console(file=io.StringIO(), width=120), options=options)
    try:
        for problem in problems:
            server.reset()
            turn = await chat.turn(problem.question)
            assert turn.error is None and turn.answer == problem.gold
            chat.session.turns.append(turn)
    finally:
        if chat.backend is not None:
            await chat.backend.aclose()
    return ["\n".join(m["content"] for m in r.body["messages"]) for r in server.completion_requests()]
