"""`reasoner bench --tolerance SPEC` and `--id-field F`: what they change, and that --resume checks them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reasoner.bench.settings import settings_differences
from reasoner.cli.main import main
from reasoner.testing.fake_openai import FakeOpenAIServer


def always_101(body: dict[str, Any], index: int) -> str:
    return "100 plus one is 101.\nThe answer is 101."


pytestmark = pytest.mark.server(responder=always_101, record=False)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rows = [
        {"qid": "near", "question": "What is 100?", "answer": "100"},
        # A question's own tolerance wins over the run's: this one stays exact.
        {"qid": "exact", "question": "What is 100 exactly?", "answer": "100", "tolerance": "rel=0"},
        {"qid": "hit", "question": "What is 101?", "answer": "101"},
    ]
    path = tmp_path / "tol.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def bench(server: FakeOpenAIServer, data: Path, out: Path, *extra: str) -> int:
    return main(["bench", "gsm8k", "--model", server.base_url, "--data", str(data), "-s", "zero-shot-cot", "--out", str(out), *extra])


def verdicts(out: Path) -> dict[str, bool]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {r["id"]: r["correct"] for r in rows}


def test_tolerance_judges_questions_without_their_own(server: FakeOpenAIServer, data: Path, tmp_path: Path) -> None:
    assert bench(server, data, tmp_path / "exact", "--id-field", "qid") == 0
    assert verdicts(tmp_path / "exact") == {"near": False, "exact": False, "hit": True}
    assert bench(server, data, tmp_path / "loose", "--id-field", "qid", "--tolerance", "rel=0.02") == 0
    assert verdicts(tmp_path / "loose") == {"near": True, "exact": False, "hit": True}
    run = json.loads((tmp_path / "loose" / "run.json").read_text())
    assert run["settings"]["tolerance"] == "rel=0.02,places=2,sig=2"


def test_resume_refuses_another_tolerance(server: FakeOpenAIServer, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert bench(server, data, out, "--tolerance", "rel=0.02") == 0
    capsys.readouterr()
    assert bench(server, data, out, "--tolerance", "rel=0.5", "--resume") == 2
    assert 'tolerance: "rel=0.02,places=2,sig=2" → "rel=0.5,places=2,sig=2"' in capsys.readouterr().err.replace("\n", " ")


def test_bad_tolerance_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["bench", "gsm8k", "-s", "zero-shot-cot", "--tolerance", "rel=lots", "--out", str(tmp_path / "x")])
    assert exit.value.code == 2
    assert "argument --tolerance: tolerance 'rel=lots': rel:" in capsys.readouterr().err


def test_id_field_names_the_records_and_is_checked_on_resume(
    server: FakeOpenAIServer, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert bench(server, data, out) == 0  # without it: the file's <name>-<line> ids
    assert set(verdicts(out)) == {"tol-1", "tol-2", "tol-3"}
    out2 = tmp_path / "ids"
    assert bench(server, data, out2, "--id-field", "qid") == 0
    assert set(verdicts(out2)) == {"near", "exact", "hit"}
    capsys.readouterr()
    assert bench(server, data, out2, "--id-field", "id", "--resume") == 2
    assert 'data.id_field: "qid" → "id"' in capsys.readouterr().err.replace("\n", " ")


def test_runs_from_before_these_settings_resume_at_their_defaults() -> None:
    old = {"data": {"questions": 3}, "scoring": "ours"}
    assert settings_differences(old, {"data": {"questions": 3, "id_field": "id"}, "scoring": "ours", "tolerance": None}) == []
    assert settings_differences(old, {"data": {"questions": 3, "id_field": "qid"}, "scoring": "ours", "tolerance": "rel=0.1"}) == [
        'data.id_field: (absent) → "qid"', 'tolerance: (absent) → "rel=0.1"',
    ]
