"""The results explorer in a real headless Chromium (Debian's package, driven by Playwright): the
page loads from disk with no console errors, the grid has the run's counts, filters combine,
clicking a question draws its traces and clicking a node shows its prompt. The screenshot is kept
as a test artifact ($REASONER_ARTIFACTS, else the test's temporary folder)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reasoner.bench.explorer import explorer_data, verdict, write_explorer
from reasoner.bench.record import Record
from reasoner.cli.main import main
from reasoner.testing.fake_openai import FakeOpenAIServer
from sim_support import SERVED, data  # noqa: F401 - the simulated model's questions

pytestmark = SERVED

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
QUESTIONS = 12
SC, COT = "self-consistency:samples=3", "few-shot-cot"

playwright = pytest.importorskip("playwright.sync_api")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def run(server: FakeOpenAIServer, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("explorer") / "run"
    assert main([
        "bench", "gsm8k", "--model", server.base_url, "--data", str(data), "--limit", str(QUESTIONS), "--out", str(out),
        "-s", SC, "-s", COT, "--seed", "0",
    ]) == 0
    assert main(["report", str(out), "--html"]) == 0
    return out


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Offline: any request other than the file itself is a failure of "self-contained".
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
    page.on("requestfailed", lambda r: errors.append(f"request to {r.url}"))
    page.goto(path.as_uri())
    return page, errors


def test_the_page_is_self_contained(run: Path) -> None:
    html = (run / "explorer.html").read_text()
    assert "<script src" not in html and "<link" not in html and "http://" not in html.split('<script id="data"')[0]
    assert "</script>" not in html.split('<script id="data" type="application/json">')[1].split("</script>", 1)[0]


@needs_browser
def test_grid_counts_filters_traces_and_node_details(run: Path, browser: Any, tmp_path: Path) -> None:
    page, errors = open_page(browser, run / "explorer.html")
    rows = results(run)
    assert page.text_content("#count") == f"{QUESTIONS} of {QUESTIONS} questions shown"
    assert page.locator("#grid tbody tr").count() == QUESTIONS
    for label in (SC, COT):
        right = sum(r["correct"] for r in rows if r["strategy"] == label)
        assert page.locator(f'#grid td.cell.right[data-strategy="{label}"]').count() == right
    assert page.locator("#summary tbody tr").count() == 2

    # "wrong with self-consistency, right with few-shot": each filter narrows, and they combine.
    cells = {(r["strategy"], r["id"]): verdict(Record.model_validate(r)) for r in rows}
    sc_wrong = {q for (label, q), v in cells.items() if label == SC and v == "wrong"}
    both = {q for q in sc_wrong if cells.get((COT, q)) == "right"}
    assert 0 < len(sc_wrong) < QUESTIONS
    page.select_option(f'select[data-strategy="{SC}"]', "wrong")
    assert page.text_content("#count") == f"{len(sc_wrong)} of {QUESTIONS} questions shown"
    page.select_option(f'select[data-strategy="{COT}"]', "right")
    assert page.text_content("#count") == f"{len(both)} of {QUESTIONS} questions shown"
    assert page.locator("#grid tbody tr").count() == len(both)
    page.select_option(f'select[data-strategy="{COT}"]', "")
    page.select_option(f'select[data-strategy="{SC}"]', "")
    page.fill("#search", "Question #3:")
    assert page.locator("#grid tbody tr").count() == 1

    page.click("#grid tbody tr")
    sc_graph = page.locator(f'.trace[data-strategy="{SC}"] svg')
    assert sc_graph.locator(".node").count() == 3 * 2 + 1  # three samples, each reason + parse; one vote
    sc_graph.locator('.node[data-node-id="sample1/reason"]').click()
    prompt = page.text_content("#node-prompt") or ""
    assert "Question #3: what number is the simulated model asked for?" in prompt
    assert "The answer is" in (page.text_content("#node-output") or "")
    artifacts = Path(os.environ.get("REASONER_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "explorer.png"))
    assert (artifacts / "explorer.png").stat().st_size > 10_000
    assert errors == []


def tree_run(tmp_path: Path) -> Path:
    """A run folder whose one trace is a search tree: root → two children → two grandchildren each."""
    out = tmp_path / "tree"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"settings": {
        "benchmark": "toy", "scoring": "ours", "strategies": {"search": {"name": "tree-of-thought"}},
        "data": {"questions": 1}, "model": {"spec": "scripted"},
    }}))
    (out / "results.jsonl").write_text(json.dumps({
        "strategy": "search", "id": "t1", "question": "Which path? </script><b>not markup</b>", "gold": "4",
        "prediction": "4", "correct": True, "correct_ours": True,
    }) + "\n")
    nodes = [{"id": "root", "kind": "model", "label": "propose", "status": "done", "request": {"prompt": "start here"}}]
    edges = []
    for a in ("a", "b"):
        nodes.append({"id": a, "kind": "model", "label": f"step {a}", "status": "done", "request": {"prompt": f"expand {a}"}})
        edges.append({"source": "root", "target": a})
        for leaf in (f"{a}1", f"{a}2"):
            status = "failed" if leaf == "b2" else "done"
            nodes.append({"id": leaf, "kind": "function", "label": "score", "status": status, "output": {"score": 0.5},
                          **({"error": "ValueError: no score"} if status == "failed" else {})})
            edges.append({"source": a, "target": leaf})
    (out / "traces.jsonl").write_text(json.dumps({"strategy": "search", "id": "t1", "details": {}, "trace": {"nodes": nodes, "edges": edges}}) + "\n")
    return out


def test_texts_are_pooled_and_cut(tmp_path: Path) -> None:
    data = explorer_data(tree_run(tmp_path))
    assert data["questions"][0]["cells"]["search"] == {"v": "right", "prediction": "4", "error": None, "tokens": 0, "trace": 0}
    assert len(data["strings"]) == len(set(data["strings"]))


@needs_browser
def test_a_search_tree_is_laid_out_as_a_tree(tmp_path: Path, browser: Any) -> None:
    page, errors = open_page(browser, write_explorer(tree_run(tmp_path)))
    # The question's markup is text, not HTML: no <b> element came from the data.
    assert page.locator("#grid b").count() == 0
    page.click("#grid tbody tr")
    graph = page.locator(".trace svg")
    assert graph.get_attribute("data-layout") == "tree"

    def at(node: str) -> tuple[float, float]:
        box = graph.locator(f'.node[data-node-id="{node}"]').bounding_box()
        assert box is not None
        return box["x"] + box["width"] / 2, box["y"]

    (rx, ry), (ax, ay), (bx, by) = at("root"), at("a"), at("b")
    assert ay > ry and by > ry and ax < rx < bx  # children below their parent, which sits between them
    (a1x, a1y), (a2x, _) = at("a1"), at("a2")
    assert a1y > ay and abs(ax - (a1x + a2x) / 2) < 1 and a2x < bx
    assert graph.locator('.node.failed[data-node-id="b2"]').count() == 1
    graph.locator('.node[data-node-id="b2"]').click()
    assert page.text_content("#node-error") == "ValueError: no score"
    graph.locator('.node[data-node-id="a"]').click()
    assert page.text_content("#node-prompt") == "expand a"
    assert errors == []


@needs_browser
def test_solve_writes_one_questions_trace_page(server: FakeOpenAIServer, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "trace.html"
    argv = ["solve", "Question #5: what number is the simulated model asked for?", "--model", server.base_url,
            "-s", "self-consistency", "--samples", "3", "--seed", "0", "--trace-html", str(path)]
    # On a thread of its own: Playwright's sync API holds this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(main, argv).result() == 0
    page, errors = open_page(browser, path)
    graph = page.locator(".trace svg")  # the page opens on its one question
    assert graph.locator(".node").count() == 7
    graph.locator('.node[data-node-id="sample2/reason"]').click()
    assert "Question #5: what number is the simulated model asked for?" in (page.text_content("#node-prompt") or "")
    assert errors == []
