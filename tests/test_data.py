"""Loading GSM8K and other JSONL problem sets; errors name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasoner.data import DataError, gsm8k_path, load_gsm8k, load_jsonl


def test_loads_the_gsm8k_splits(gsm8k_dir: Path) -> None:
    test = load_gsm8k("test", gsm8k_dir)
    assert len(test) == 1319
    assert test[0].id == "gsm8k-test-1" and test[0].gold == "18"
    assert "Janet" in test[0].question and test[0].answer_field.endswith("#### 18")
    assert len(load_gsm8k("train", gsm8k_dir)) == 7473


def test_environment_variable_points_at_the_folder(gsm8k_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONER_GSM8K", str(gsm8k_dir))
    assert gsm8k_path("train") == gsm8k_dir / "train.jsonl"


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        gsm8k_path("test", tmp_path / "nowhere.jsonl")


def test_offline_without_data_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REASONER_GSM8K", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(DataError, match="REASONER_GSM8K"):
        gsm8k_path("test", download=False)


def test_generic_jsonl_with_other_fields(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text('{"q": "1+1?", "a": 2}\n\n{"q": "Half of 5?", "a": "2.5", "id": "x"}\n{"q": "Loss?", "a": "-3"}\n')
    problems = load_jsonl(path, question_field="q", answer_field="a")
    assert [(p.id, p.gold) for p in problems] == [("set-1", "2"), ("x", "2.5"), ("set-4", "-3")]


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"question": "ok?", "answer": "#### 1"', "set.jsonl:2: not valid JSON"),
        ('["a list"]', "set.jsonl:2: expected a JSON object"),
        ('{"question": "no answer"}', "set.jsonl:2: missing field 'answer'"),
        ('{"question": "q", "answer": "no number here"}', "set.jsonl:2: field 'answer'"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text('{"question": "fine", "answer": "#### 3"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        load_jsonl(path)
