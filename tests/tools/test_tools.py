"""Calculator, document search, the tool registry and `default_tools` (sandbox escapes live
in test_sandbox.py)."""

from __future__ import annotations

import importlib
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from reasoner.tools import DocumentIndex, ToolRegistry, calculate, calculator, default_tools, make_search_tool
from reasoner.tools.calculator import CalculatorError
from reasoner.tools.search import split_passages, tokenize

# The module, not the `calculator` tool that `reasoner.tools` exports under the same name.
calculator_module = importlib.import_module("reasoner.tools.calculator")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * 4", "20"),
        ("0.1 + 0.2", "0.3"),  # exact: no 0.30000000000000004
        ("1/3 * 3", "1"),
        ("10 / 4", "2.5"),
        ("1/3", "0.333333333333333"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("2 ** 10", "1024"),
        ("2 ^ 10", "1024"),  # ^ is power
        ("2 ^ 3 ^ 2", "512"),  # right-associative
        ("-2 ** 2", "-4"),  # power binds tighter than unary minus
        ("2 ** -1", "0.5"),
        ("--3", "3"),
        ("+5", "5"),
        ("50%", "0.5"),
        ("200 * 15%", "30"),
        ("20% of 50", "10"),
        ("(1 + 2)%", "0.03"),
        ("1,000 + 1", "1001"),
        ("1,234,567.5 * 2", "2469135"),
        ("max(1, 000)", "1"),  # a space after the comma: two arguments
        ("round(2.5)", "3"),  # half away from zero
        ("round(-2.5)", "-3"),
        ("round(3.14159, 2)", "3.14"),
        ("round(1.005, 2)", "1.01"),  # exact decimals: no binary-float surprise
        ("abs(-3.5)", "3.5"),
        ("min(4, 2, 8)", "2"),
        ("max(4, 2, 8)", "8"),
        ("sqrt(16)", "4"),
        ("sqrt(2) ** 2", "2"),
        ("sqrt(1/4)", "0.5"),
        ("4 ** 0.5", "2"),
        ("floor(2.7) + ceil(2.1)", "5"),
        ("2 * pi", "6.28318530717959"),
        ("1e3 + 1.5e-1", "1000.15"),
        ("3 × 4 ÷ 2 − 1", "5"),
        ("10 ** 100", "1" + "0" * 100),
        ("(1.0000001) ** 10 ** 9", "2.68810385821446e+43"),  # huge exact power falls back to float
        ("(-1) ** 1000001", "-1"),
        ("(" * 40 + "1" + ")" * 40, "1"),
    ],
)
def test_calculator_values(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("5 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("foo(2)", "unknown name 'foo' at column 1"),
        ("x + 1", "unknown name 'x'"),
        ("__import__('os')", "unexpected character"),
        ("2 +", "unexpected end of expression at column 4"),
        ("2 3", "unexpected '3' at column 3"),
        ("(1 + 2", "expected ')'"),
        ("2,5", "commas only group thousands"),
        ("max(1,000)", "ambiguous inside a function call"),
        ("sqrt(-1)", "sqrt of a negative number"),
        ("(-8) ** (1/3)", "not a real number"),
        ("round(2.5, 0.5)", "round() digits must be a whole number"),
        ("sqrt(1, 2)", "sqrt() takes 1 argument(s), got 2"),
        ("", "empty expression"),
        ("10 ** 101", "too large"),
        ("1e999", "out of range"),
        ("[1, 2]", "unexpected character '['"),
        ("2 < 3", "unexpected character '<'"),
    ],
)
def test_calculator_rejections(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError) as caught:
        calculate(expression)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "expression",
    [
        "9**9**9**9",
        "10**100000",
        "2**2**2**2**2**2",
        "0.5 ** -400",
        "10**99 * 10**99",
        "(" * 10_000 + "1" + ")" * 10_000,  # too long
        "(" * 200 + "1" + ")" * 200,  # too deep
        "2**" * 150 + "2",  # too deep, right-associative chain
        "-" * 490 + "1",  # a long sign run is a loop, not recursion
        "9" * 400,
        "1e400 * 1e400",
        "1/3 ** 100 * (1/7) ** 100",  # giant denominators continue as floats
    ],
)
def test_calculator_attacks_return_fast(expression: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fast by the work done, not a stopwatch: the lines of the calculator that run grow with the
    # expression's length (not its value or nesting), and no number it makes is huge (a power's
    # size is estimated before it is computed, a long denominator continues as a float).
    biggest = 0  # bits of the largest numerator or denominator made
    check = calculator_module._check

    def watched(value):  # type: ignore[no-untyped-def]
        nonlocal biggest
        if isinstance(value, Fraction):
            biggest = max(biggest, value.numerator.bit_length(), value.denominator.bit_length())
        return check(value)

    monkeypatch.setattr(calculator_module, "_check", watched)
    lines = 0
    source = calculator_module.__file__

    def trace(frame, event, arg):  # type: ignore[no-untyped-def]
        if frame.f_code.co_filename != source:
            return None

        def count(frame, event, arg):  # type: ignore[no-untyped-def]
            nonlocal lines
            lines += event == "line"
            return count

        return count

    previous = sys.gettrace()  # a coverage tracer, say: put back after
    sys.settrace(trace)
    try:
        calculate(expression)
    except CalculatorError:
        pass
    finally:
        sys.settrace(previous)
    # The attacks measure under 20 lines a character (a 491-character sign run: 7,909).
    assert 0 < lines <= 40 * len(expression) + 1000, lines
    # Within what an exact power may reach (|exponent| x bits <= 20,000); 1e400 is 1,329 bits.
    assert biggest <= 20_000, biggest


async def test_calculator_tool_reports_errors_as_observations() -> None:
    good = await calculator("12.5 * 4 + 20% of 50")
    assert good.ok and good.output == "60" and good.tool == "calculator"
    bad = await calculator({"expression": "1/0"})
    assert not bad.ok and "division by zero" in bad.output
    wrong = await calculator({"expr": "1"})
    assert not wrong.ok and "bad arguments" in wrong.output


DOCS = {
    "guide/refunds.md": "# Refunds\n\nOur refund policy lasts 30 days.\nAfter 30 days we cannot offer a refund.\n\n"
    "## Exchanges\n\nItems can be exchanged for the same item if defective or damaged.\n",
    "guide/shipping.md": "# Shipping\n\nWe ship worldwide. Standard shipping takes 5 to 7 business days.\n\n"
    "Express shipping costs 15 dollars and takes 2 days.\n",
    "notes.txt": "The warehouse is in Rotterdam.\nIt opened in 2019.\n\n\nThe office cat is called Pixel.\n",
    "data.bin.md": "\x00\x01binary",
    "image.png": "not indexed",
}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for name, text in DOCS.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.md").write_text("refund refund refund")
    return tmp_path


def test_split_passages_tracks_lines_and_headings() -> None:
    text = "# Title\nintro line\n\npara one\npara two\n## Next\nbody\n" + "\n".join(f"l{i}" for i in range(20))
    passages = split_passages(text, window=15)
    assert passages[0] == (1, "# Title\nintro line")
    assert passages[1] == (4, "para one\npara two")
    assert passages[2][0] == 6 and passages[2][1].startswith("## Next")
    assert passages[3][0] == 6 + 15  # a long paragraph is cut into windows


def test_tokenize() -> None:
    assert tokenize("Don't PANIC: 42 km/h, naïve") == ["don", "t", "panic", "42", "km", "h", "naïve"]


def test_search_ranks_the_right_passage_first(docs: Path) -> None:
    index = DocumentIndex(docs)
    assert index.skipped == ["data.bin.md"]
    assert {p.file for p in index.passages} == {"guide/refunds.md", "guide/shipping.md", "notes.txt"}
    top = index.search("how many days for a refund?", k=3)
    assert (top[0].file, top[0].line) == ("guide/refunds.md", 3)
    assert top[0].score > top[-1].score > 0
    express = index.search("express shipping cost")[0]
    assert (express.file, express.line) == ("guide/shipping.md", 5)
    assert index.search("cat name")[0].line == 5
    assert index.search("zebra") == []
    assert index.search("exchange defective item", k=1)[0].text.startswith("Items can be exchanged")


def test_idf_stays_positive_for_common_terms(docs: Path) -> None:
    index = DocumentIndex(docs)
    assert index.idf("the") > 0 and index.idf("rotterdam") > index.idf("the")


async def test_search_tool_output_cites_file_and_line(docs: Path) -> None:
    search = make_search_tool(docs)
    result = await search("warehouse location Rotterdam")
    assert result.ok and result.tool == "search"
    assert result.output.startswith("[1] notes.txt:1 (score ")
    assert result.value[0].file == "notes.txt"
    many = await search({"query": "days", "k": 50})
    assert len(many.value) <= 10
    none = await search("xylophone")
    assert none.ok and "no passage matches" in none.output


def test_search_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="search folder not found"):
        DocumentIndex(tmp_path / "nope")


def test_default_tools_registry(docs: Path) -> None:
    registry = default_tools(["calculator", "python", "search"], docs=str(docs))
    assert isinstance(registry, ToolRegistry)
    assert registry.names() == ["calculator", "python", "search"]
    described = registry.describe()
    for line in ("calculator[expression]:", "python[code]:", "search[query]:"):
        assert line in described
    schemas = {s["function"]["name"]: s["function"] for s in registry.openai_schemas()}
    assert set(schemas) == {"calculator", "python", "search"}
    assert schemas["calculator"]["parameters"]["required"] == ["expression"]
    assert schemas["python"]["parameters"]["required"] == ["code"]
    assert schemas["search"]["parameters"]["required"] == ["query"]
    assert "k" in schemas["search"]["parameters"]["properties"]


def test_default_tools_errors() -> None:
    with pytest.raises(ValueError, match="needs a folder of documents"):
        default_tools(["search"])
    with pytest.raises(ValueError, match="unknown tool 'web'"):
        default_tools(["calculator", "web"])
    with pytest.raises(ValueError, match="already registered"):
        default_tools(["calculator", "calculator"])


async def test_registry_calls_tools(docs: Path) -> None:
    registry = default_tools(["calculator", "search"], docs=docs)
    assert (await registry.call("calculator", "2^8")).output == "256"
    assert (await registry.call("search", "refund policy")).value[0].file == "guide/refunds.md"
    assert not (await registry.call("python", "1")).ok  # not registered
