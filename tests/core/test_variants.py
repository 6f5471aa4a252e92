"""Strategy variants in one run (`-s 'self-consistency:samples=16,stopping=beta'`), and the bank
under the runner: SC@16 recorded once, then SC@8, beta and esc replayed from it without a single
new model call, with the answers of live runs under the same seeds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from reasoner.bench.gsm8k import BenchConfig, BenchResult, run_gsm8k
from reasoner.bench.report import read_run
from reasoner.cli.main import main
from reasoner.strategy import Strategy, get_strategy
from reasoner.testing.fake_openai import FakeOpenAIServer
from sim_support import QUESTIONS, SERVED, data  # noqa: F401 - the simulated model and its questions

pytestmark = SERVED


def bench(server: FakeOpenAIServer, data: Path, out: Path, strategies: dict[str, Strategy], **kw: Any) -> BenchResult:
    config = BenchConfig(strategies=strategies, out=out, model=server.base_url, data=data, concurrency=32, **kw)
    return asyncio.run(run_gsm8k(config, console=Console(quiet=True)))


def predictions(out: Path) -> dict[tuple[str, str], str | None]:
    _, records, _ = read_run(out)
    return {r.key: r.prediction for r in records}


def test_variants_replayed_from_a_bank_make_no_model_calls_and_match_live_runs(
    server: FakeOpenAIServer, data: Path, tmp_path: Path
) -> None:
    bank = tmp_path / "sc.bank"
    server.requests.clear()
    recorded = bench(server, data, tmp_path / "sc16", {"SC@16": get_strategy("self-consistency", samples=16, seed=0)}, bank=bank)
    assert len(server.completion_requests()) == QUESTIONS  # one n=16 request a question
    assert recorded.notes[-1].startswith(f"bank: {QUESTIONS} new model calls ({QUESTIONS * 16} samples")

    def variants() -> dict[str, Strategy]:
        sc = lambda **kw: get_strategy("self-consistency", samples=16, seed=0, **kw)  # noqa: E731
        return {"SC@8": get_strategy("self-consistency", samples=8, seed=0), "beta": sc(stopping="beta"), "esc": sc(stopping="esc")}

    server.requests.clear()
    replayed = bench(server, data, tmp_path / "replay", variants(), bank=bank, bank_mode="replay")
    assert server.completion_requests() == []  # the server's own count: zero new calls
    assert replayed.notes[-1].startswith("bank: 0 new model calls (0 samples, 0 tokens)")
    run = json.loads((tmp_path / "replay" / "run.json").read_text())
    assert run["sessions"][-1]["bank"]["usage"]["new_calls"] == 0
    assert all(f["errors"] == 0 for f in replayed.report.summary["strategies"].values())

    live = bench(server, data, tmp_path / "live", variants())
    assert len(server.completion_requests()) > QUESTIONS  # the live runs did ask
    assert predictions(tmp_path / "replay") == predictions(tmp_path / "live")
    assert len(predictions(tmp_path / "live")) == 3 * QUESTIONS


def test_cli_runs_labelled_variants_in_one_run_and_compares_them(server: FakeOpenAIServer, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main([
        "bench", "gsm8k", "--model", server.base_url, "--data", str(data), "--limit", "6", "--out", str(out),
        "-s", "self-consistency:samples=4,stopping=beta", "-s", "self-consistency:samples=4", "-s", "self-consistency",
        "--samples", "6", "--seed", "0", "--bank", str(tmp_path / "b.bank"),
    ])
    assert code == 0
    settings = json.loads((out / "run.json").read_text())["settings"]["strategies"]
    assert list(settings) == ["self-consistency:samples=4,stopping=beta", "self-consistency:samples=4", "self-consistency"]
    # A variant's own options go over the shared flags; the plain name takes the flags.
    assert settings["self-consistency:samples=4,stopping=beta"]["samples"] == 4
    assert settings["self-consistency:samples=4,stopping=beta"]["stopping"] == "beta"
    assert settings["self-consistency"]["samples"] == 6
    summary = json.loads((out / "summary.json").read_text())
    pairs = {(c["a"], c["b"]) for c in summary["paired"]}  # McNemar, each pair of variants
    assert len(pairs) == 3 and all(c["n"] == 6 for c in summary["paired"])
    # Cost side by side: the capped variants drew fewer samples than the 6 of the plain one.
    tokens = {label: f["completion_tokens_per_question"] for label, f in summary["strategies"].items()}
    assert tokens["self-consistency:samples=4"] < tokens["self-consistency"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("self-consistency:samples=lots", "option 'samples'='lots'"),
        ("self-consistency:stopping=sometimes", "option 'stopping'='sometimes'"),
        ("self-consistency:colour=red", "has no option 'colour'"),
        ("self-consistency:samples", "option 'samples' in 'self-consistency:samples' is not KEY=VALUE"),
        ("no-such-strategy:samples=2", "unknown strategy 'no-such-strategy'"),
    ],
)
def test_a_bad_variant_is_a_usage_error_naming_it(spec: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["bench", "gsm8k", "-s", spec, "--out", str(tmp_path / "never")])
    assert code == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "never").exists()


def test_replay_only_with_a_missing_sample_fails_that_question_naming_it(server: FakeOpenAIServer, data: Path, tmp_path: Path) -> None:  # noqa: F811
    bank, out = tmp_path / "sc.bank", tmp_path / "run"
    common = ["bench", "gsm8k", "--model", server.base_url, "--data", str(data), "--seed", "0", "--bank", str(bank)]
    assert main([*common, "--limit", "2", "--out", str(tmp_path / "rec"), "-s", "self-consistency:samples=4"]) == 0
    server.requests.clear()
    # Six samples asked of a bank holding four, on the questions recorded, and two questions never seen.
    code = main([*common, "--bank-mode", "replay", "--limit", "3", "--out", str(out), "-s", "self-consistency:samples=6"])
    assert code == 1
    assert server.completion_requests() == []
    errors = {json.loads(line)["id"]: json.loads(line)["error"] for line in (out / "results.jsonl").read_text().splitlines()}
    assert set(errors) == {"q0", "q1", "q2"}
    assert all(e and "(replay only) has no sample" in e for e in errors.values())
    assert "no sample 4..5 (2 samples)" in errors["q0"] and "no sample 0..5 (6 samples)" in errors["q2"]
    assert "Question #2: what number is the simulated model asked for?" in errors["q2"]  # the prompt's end names it
