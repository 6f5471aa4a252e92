"""A flowchart run as the explorer and `--trace` show it: the path the flow took, a loop as repeated
nodes with their round, a branch as the condition's value and the side taken (the other side absent)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from reasoner.bench.explorer import solution_data, write_solution_page
from reasoner.strategies.flowchart import Flowchart
from reasoner.testing.scripted import ScriptedBackend
from reasoner.trace import render_tree
from reasoner.types import Solution

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUESTION = "A colony has 3 bacteria and doubles every week if it has more than 1. How many bacteria are there after 4 weeks?"
CHART = json.dumps({"nodes": [
    {"id": "start", "kind": "ask", "question": "How many bacteria at the start?", "store": "count", "next": "check"},
    {"id": "check", "kind": "decide", "condition": "count > 1", "yes": "weeks", "no": "dies"},
    {"id": "dies", "kind": "compute", "expr": "0", "store": "count", "next": "done"},
    {"id": "weeks", "kind": "loop", "times": "4", "body": "double", "next": "done"},
    {"id": "double", "kind": "compute", "expr": "count * 2", "store": "count", "next": "weeks"},
    {"id": "done", "kind": "answer", "expr": "count"}]})


@pytest.fixture(scope="module")
def solution() -> Solution:
    backend = ScriptedBackend([(r"Write the problem as a flowchart", CHART), (r"Sub-question: How many bacteria", "The answer is 3.")])
    solved = asyncio.run(Flowchart(fallback="none").solve(QUESTION, backend))
    assert solved.answer == "48", solved.details
    return solved


def test_the_explorer_data_holds_each_round_and_the_side_taken(solution: Solution) -> None:
    data = solution_data(solution, "scripted")
    trace, strings = data["traces"][0], data["strings"]
    doubles = [n for n in trace["nodes"] if n["label"] == "compute double"]
    assert [n["id"] for n in doubles] == [f"weeks@{i}/compute double" for i in range(1, 5)]
    assert [json.loads(strings[n["outputs"][0]])["output"] for n in doubles] == ["6", "12", "24", "48"]
    (decision,) = [n for n in trace["nodes"] if n["label"] == "decide check"]
    said = json.loads(strings[decision["outputs"][0]])
    assert said["input"] == "count > 1" and said["output"].endswith(": yes → weeks") and said["value"] is True
    assert not any("dies" in n["label"] for n in trace["nodes"])  # the side not taken never ran
    # In the order the flow ran them: the decision before the loop's first round.
    order = [n["id"] for n in trace["nodes"]]
    assert order.index("decide check") < order.index("weeks@1/compute double")


def test_the_terminal_trace_names_each_round_and_the_side_taken(solution: Solution) -> None:
    shown = io.StringIO()
    Console(file=shown, width=160, color_system=None).print(render_tree(solution.trace))
    text = shown.getvalue()
    for i, value in enumerate(["6", "12", "24", "48"], start=1):
        assert f"weeks@{i}/compute double" in text and f"→ {value}\n" in text
    assert text.count("compute double") == 4 and "decide check" in text and "decide[count > 1] → 3 > 1: yes → weeks" in text


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_the_page_shows_the_round_on_each_repeated_node(solution: Solution, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    page_path = write_solution_page(solution, tmp_path / "flowchart.html", "scripted")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            for i in (1, 4):
                node = page.locator(f'.node[data-node-id="weeks@{i}/compute double"]')
                assert f"tool · weeks@{i}" in (node.text_content() or "")
            assert errors == []
        finally:
            browser.close()
