"""Loading GSM8K and other JSONL problem sets; errors name the file and line."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from reasoner import data
from reasoner.data import DataError, gsm8k_path, load_gsm8k, load_jsonl
from reasoner.numbers import Tolerance


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
    monkeypatch.setattr(data, "SHIPPED", tmp_path / "not-installed")  # an install without the shipped copy
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


# --- data sets in other schemas (issue 16) ---------------------------------------------

DATA = Path(__file__).parents[1] / "data"


def test_loads_svamp_joining_body_and_question() -> None:
    problems = load_jsonl(DATA / "svamp.jsonl", question_field="Body+Question", answer_field="Answer", id_field="ID")
    assert [(p.id, p.gold) for p in problems] == [("chal-1", "19"), ("chal-2", "42"), ("chal-3", "11.25")]
    assert problems[0].question == (
        "A baker made 48 muffins and sold 29 of them in the morning. How many muffins does the baker have left?"
    )


def test_loads_gsm_hard_with_scientific_and_repeating_targets() -> None:
    problems = load_jsonl(DATA / "gsm_hard.jsonl", question_field="input", answer_field="target")
    assert [p.gold for p in problems] == ["21000000", "0.00000201", "-13", "0.6666666666666666"]
    assert [p.id for p in problems] == ["gsm_hard-1", "gsm_hard-2", "gsm_hard-3", "gsm_hard-4"]


def test_loads_asdiv_answers_with_units_and_fractions() -> None:
    problems = load_jsonl(DATA / "asdiv.jsonl", question_field="body+question", answer_field="answer")
    assert [p.gold for p in problems] == ["21", "0.75", "300"]
    assert problems[0].answer_field == "21 (apples)"


def test_loads_mawps_one_element_solution_lists() -> None:
    problems = load_jsonl(DATA / "mawps.jsonl", question_field="sQuestion", answer_field="lSolutions", id_field="iIndex")
    assert [(p.id, p.gold) for p in problems] == [("1001", "43"), ("1002", "10")]


def test_a_program_as_the_answer_is_refused_in_one_short_line() -> None:
    # Pointing the answer at GSM-Hard's `code` field printed the whole program.
    with pytest.raises(DataError) as error:
        load_jsonl(DATA / "gsm_hard.jsonl", question_field="input", answer_field="code")
    message = str(error.value)
    assert message.startswith(f"{DATA / 'gsm_hard.jsonl'}:1: field 'code': no gold number in")
    assert "\n" not in message and "return result" not in message and len(message) < 250


def write(tmp_path: Path, *lines: str | bytes) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"question": null, "answer": 3}', "set.jsonl:2: field 'question' must be text, got null"),
        ('{"question": 17, "answer": 3}', "set.jsonl:2: field 'question' must be text, got int 17"),
        ('{"question": ["a"], "answer": 3}', "set.jsonl:2: field 'question' must be text, got list"),
        ('{"question": "  ", "answer": 3}', "set.jsonl:2: field 'question' is empty"),
        ('{"question": "q", "answer": [1, 2]}', "set.jsonl:2: field 'answer' holds 2 answers"),
        ('{"question": "q", "answer": true}', "set.jsonl:2: field 'answer': gold answer must be a string or a number"),
        ('{"question": "q", "answer": NaN}', "set.jsonl:2: field 'answer': gold answer must be a finite number"),
        ('{"question": "q", "answer": 1e400}', "set.jsonl:2: field 'answer': gold answer must be a finite number"),
        ('{"question": "q", "answer": 3, "id": {"a": 1}}', "set.jsonl:2: field 'id' must be text or an integer"),
        ('{"question": "q", "answer": 3, "tolerance": "rel=lots"}', "set.jsonl:2: field 'tolerance'"),
        ('{"question": "q", "answer": ' + "9" * 5000 + "}", "set.jsonl:2: not readable JSON"),
    ],
)
def test_bad_fields_are_refused_naming_file_line_and_field(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path, '{"question": "fine", "answer": 3}', row)
    with pytest.raises(DataError, match=message) as error:
        load_jsonl(path)
    assert "\n" not in str(error.value) and len(str(error.value)) < 300


def test_an_overlong_answer_field_is_quoted_cut_short(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "q", "answer": "' + "word " * 2000 + '"}')
    with pytest.raises(DataError, match=r"set.jsonl:1: field 'answer': no gold number in 'word word .*… \(10,002 characters\)"):
        load_jsonl(path)


def test_many_fields_are_listed_cut_short(tmp_path: Path) -> None:
    path = write(tmp_path, "{" + ", ".join(f'"f{i}": {i}' for i in range(500)) + "}")
    with pytest.raises(DataError, match=r"missing field 'question' \(fields: 'f0', .*… \(500 in all\)\)") as error:
        load_jsonl(path)
    assert len(str(error.value)) < 300


def test_non_utf8_data_names_file_line_and_byte(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "fine", "answer": 3}', b'{"question": "caf\xe9?", "answer": 3}')
    with pytest.raises(DataError, match=r"set.jsonl:2: not UTF-8 \(byte 0xe9 at column 18\)"):
        load_jsonl(path)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, b'\xef\xbb\xbf{"question": "q", "answer": 3}')
    assert [p.gold for p in load_jsonl(path)] == ["3"]


def test_an_unreadable_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        load_jsonl(tmp_path)


def test_fraction_golds_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "q", "answer": "3/4"}', '{"question": "r", "answer": "Half of 3/2\\n#### 3/4"}',
                 '{"question": "s", "answer": "2/3"}')
    assert [p.gold for p in load_jsonl(path)] == ["0.75", "0.75", "2/3"]


def test_a_row_may_set_its_tolerance(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "q", "answer": 3, "tolerance": "rel=0.01"}',
                 '{"question": "r", "answer": 3, "tolerance": {"places": null}}', '{"question": "s", "answer": 3}')
    first, second, third = load_jsonl(path)
    assert first.tolerance == Tolerance(rel=0.01)
    assert second.tolerance == Tolerance(places=None)
    assert third.tolerance is None


# --- the copy shipped with the package, and the download behind it (issue 24) ------------


def serve_files(files: dict[str, bytes]) -> tuple[str, list[str], http.server.ThreadingHTTPServer]:
    """A local HTTP server answering GET /<name> from `files` (404 otherwise): its base URL, the
    paths asked for, and the server (to shut down). The download is never tested on the internet."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            asked.append(self.path)
            body = files.get(self.path.lstrip("/"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", asked, server


@pytest.fixture
def no_shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No --data, no $REASONER_GSM8K, an empty cache and an install without the shipped copy: the cache folder."""
    monkeypatch.delenv("REASONER_GSM8K", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "SHIPPED", tmp_path / "not-installed")
    return tmp_path / "cache" / "reasoner" / "gsm8k"


@pytest.mark.parametrize("split,rows", [("test", 1319), ("train", 7473)])
def test_the_shipped_splits_are_the_release(split: data.Split, rows: int) -> None:
    path = data.shipped_path(split)
    assert path is not None, "the GSM8K split is missing from the package"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == data.GSM8K_SHA256[split]
    assert len(load_jsonl(path)) == rows
    licence = (path.parent / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Copyright (c) 2021 OpenAI" in licence
    # The attribution beside them gives the same sums.
    assert data.GSM8K_SHA256[split] in (path.parent / "README.md").read_text()


def test_without_data_or_environment_the_shipped_copy_is_read_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REASONER_GSM8K", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise AssertionError("the shipped copy needs no download")

    monkeypatch.setattr(data.httpx, "get", offline)
    assert gsm8k_path("test") == data.shipped_path("test")
    problems = load_gsm8k("train")
    assert len(problems) == 7473 and problems[0].id == "gsm8k-train-1"
    assert not (tmp_path / "reasoner").exists()  # nothing was written to the cache


def test_data_and_the_environment_come_before_the_shipped_copy(
    gsm8k_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = write(tmp_path, '{"question": "q", "answer": "#### 4"}')
    monkeypatch.setenv("REASONER_GSM8K", str(gsm8k_dir))
    assert gsm8k_path("test", own) == own
    assert gsm8k_path("test") == gsm8k_dir / "test.jsonl"


def test_a_corrupt_shipped_file_names_its_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REASONER_GSM8K", raising=False)
    shipped = tmp_path / "gsm8k"
    shipped.mkdir()
    (shipped / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": "trunc\n')
    monkeypatch.setattr(data, "SHIPPED", shipped)
    with pytest.raises(DataError, match=r"^\S*gsm8k/test\.jsonl:2: not valid JSON") as caught:
        load_gsm8k("test")
    assert "\n" not in str(caught.value)


def test_a_zipped_install_copies_the_split_out_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    release = data.shipped_path("test")
    assert release is not None
    with zipfile.ZipFile(tmp_path / "site.zip", "w") as archive:
        archive.write(release, "reasoner/datasets/gsm8k/test.jsonl")
    monkeypatch.setattr(data, "SHIPPED", zipfile.Path(tmp_path / "site.zip", "reasoner/datasets/gsm8k/"))
    path = data.shipped_path("test")
    assert path == tmp_path / "cache" / "reasoner" / "gsm8k" / "test.jsonl"
    assert path.read_bytes() == release.read_bytes()


def test_a_missing_shipped_copy_is_downloaded_once_and_checked(
    no_shipped_copy: Path, gsm8k_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, asked, server = serve_files({"test.jsonl": (gsm8k_dir / "test.jsonl").read_bytes()})
    monkeypatch.setattr(data, "GSM8K_URL", base + "/{split}.jsonl")
    try:
        assert gsm8k_path("test") == no_shipped_copy / "test.jsonl"
        assert gsm8k_path("test") == no_shipped_copy / "test.jsonl"  # from the cache, not asked again
    finally:
        server.shutdown()
    assert asked == ["/test.jsonl"]
    assert hashlib.sha256((no_shipped_copy / "test.jsonl").read_bytes()).hexdigest() == data.GSM8K_SHA256["test"]
    assert not (no_shipped_copy / "test.partial").exists()


def test_a_download_that_is_not_the_release_is_refused_and_not_cached(
    no_shipped_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = b'{"question": "Tom has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\\n#### 5"}\n'
    base, asked, server = serve_files({"test.jsonl": small})
    monkeypatch.setattr(data, "GSM8K_URL", base + "/{split}.jsonl")
    try:
        with pytest.raises(DataError, match=r"GSM8K test from http://127\.0\.0\.1:\d+/test\.jsonl has sha256 \w+, not"):
            gsm8k_path("test")
        with pytest.raises(DataError, match=r"could not download GSM8K train from \S+ \(HTTP 404\); .*REASONER_GSM8K") as caught:
            gsm8k_path("train")
        assert "\n" not in str(caught.value)
    finally:
        server.shutdown()
    assert asked == ["/test.jsonl", "/train.jsonl"]
    assert not no_shipped_copy.exists() or not any(no_shipped_copy.iterdir())
