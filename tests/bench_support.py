"""What the runner's tests share: a simulated model whose replies are right for a known 70% of the
questions, wrong for 25% and answerless for 5% (decided by a hash of the question, so every figure
of a run is known in advance), the module's server marked to answer with it, and helpers that run
`reasoner bench` and read what it wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from reasoner.data import load_gsm8k
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.types import GenerationRequest

SECRET = "sk-bench-SECRET-7f3a"
STRATEGIES = ["few-shot-cot", "zero-shot-cot"]
LIMIT = 80
TIMING = {"wall_s", "questions_per_minute", "latency_s_per_question"}

GOLD: dict[str, str] = {}  # question -> gold number, for questions a test adds beyond GSM8K's test split


@cache
def gsm8k_gold() -> dict[str, str]:
    return {p.question.strip(): p.gold for p in load_gsm8k("test")}


def gold(question: str) -> str | None:
    return GOLD.get(question) or gsm8k_gold().get(question)


def verdict(question: str) -> str:
    bucket = int(hashlib.sha256(question.strip().encode()).hexdigest(), 16) % 100
    return "right" if bucket < 70 else "wrong" if bucket < 95 else "none"


def reply(text: str) -> str:
    """What the simulated model says: the target question is the last 'Q: ...' of the prompt."""
    question = text.rsplit("Q: ", 1)[-1].split("\nA:", 1)[0].strip()
    known = gold(question)
    if known is None:
        return "I do not know this question."
    kind = verdict(question)
    answer = known if kind == "right" else str(Decimal(known) + 1)
    if "Therefore, the answer (arabic numerals) is" in text:  # zero-shot-CoT's second call
        return " unknown." if kind == "none" else f" {answer}."
    return "I am not sure." if kind == "none" else f"Adding it up step by step. The answer is {answer}."


def http_reply(body: dict[str, Any], index: int) -> str:
    messages = body.get("messages")
    text = "\n".join(str(m.get("content") or "") for m in messages) if messages else str(body.get("prompt"))
    return reply(text)


def scripted_reply(request: GenerationRequest, index: int) -> str:
    return reply("\n".join(m.content for m in request.as_messages()))


def expected(questions: list[str]) -> Counter[str]:
    return Counter(verdict(q) for q in questions)

#: The module's simulated server (the `server` fixture) answers with `http_reply`.
SERVED = pytest.mark.server(responder=http_reply, record=False)


@pytest.fixture(scope="module")
def problems(gsm8k_dir: Path) -> list[Any]:
    return load_gsm8k("test", gsm8k_dir)


@pytest.fixture(autouse=True)
def gsm8k_env(monkeypatch: pytest.MonkeyPatch, gsm8k_dir: Path) -> None:
    """In-process runs find GSM8K here (subprocesses get it through `env`)."""
    monkeypatch.setenv("REASONER_GSM8K", str(gsm8k_dir))


@pytest.fixture
def slow_server(server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The server answering each request after 20 ms, so a kill lands mid-run."""
    server.latency_s = 0.02
    yield server
    server.latency_s = 0.0


def env(gsm8k_dir: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    e.update(REASONER_GSM8K=str(gsm8k_dir), OPENAI_API_KEY=SECRET)
    return e


def bench_argv(server: FakeOpenAIServer, out: Path, *extra: str, limit: int = LIMIT) -> list[str]:
    strategies = [a for s in STRATEGIES for a in ("--strategy", s)]
    return ["bench", "gsm8k", *strategies, "--model", server.base_url, "--limit", str(limit), "--out", str(out), *extra]


def python_cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "reasoner.cli.main", *argv]


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["strategy"], r["id"]) for r in rows]


def stable(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without its timings, which no two runs share."""
    return {
        **{k: v for k, v in summary.items() if k not in TIMING},
        "strategies": {s: {k: v for k, v in f.items() if k not in TIMING} for s, f in summary["strategies"].items()},
    }



def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


CUSTOM = [{"problem": f"A crate holds {n} apples and {n + 3} pears. How many fruits?", "solution": 2 * n + 3} for n in range(1, 13)]
