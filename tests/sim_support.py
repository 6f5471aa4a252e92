"""The simulated model behind the fake OpenAI server (`SERVED`, the conftest `server` fixture's
marker), and a data file of its questions, for the bank, variants, curves and explorer tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reasoner.simulators.samples import QUESTION_ID, SimulatedModel

SIM = SimulatedModel(seed=0)
QUESTIONS = 200


def respond(body: dict[str, Any], index: int) -> str:
    """The simulated model over HTTP: sample number = the request's seed + the choice index."""
    messages = body.get("messages")
    text = "\n".join(str(m.get("content") or "") for m in messages) if messages else str(body["prompt"])
    question = int(QUESTION_ID.findall(text)[-1])
    return SIM.sample(question, (body.get("seed") or 0) + index).text


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "sim.jsonl"
    rows = ({"id": f"q{q}", "question": SIM.question_text(q), "answer": str(SIM.gold(q))} for q in range(QUESTIONS))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


#: The `server` fixture (tests/conftest.py) of a module on the simulated model: `pytestmark = SERVED`.
SERVED = pytest.mark.server(responder=respond)
