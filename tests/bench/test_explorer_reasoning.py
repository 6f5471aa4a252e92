"""A reasoning model's thinking in the explorer: kept per choice, drawn collapsed and apart from the
output it led to, with its tokens; the answer shown is the content's (in a real headless Chromium)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reasoner.bench.explorer import solution_data
from reasoner.cli.main import main
from reasoner.simulators.thinking import Thinker
from reasoner.testing.fake_openai import FakeOpenAIServer
from sim_support import SIM, respond

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
THINKER = Thinker(respond)
QUESTION = SIM.question_text(5)


@pytest.fixture(scope="module")
def thinking_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=THINKER.respond, reasoning_field="reasoning") as server:
        yield server


def _solve(server: FakeOpenAIServer, *flags: str) -> int:
    argv = ["solve", QUESTION, "--model", server.base_url, "-s", "few-shot-cot", "--seed", "0", *flags]
    # On a thread of its own: Playwright's sync API holds this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(main, argv).result()


async def test_the_page_data_keeps_each_choices_thinking(thinking_server: FakeOpenAIServer) -> None:
    from reasoner.backends.http import OpenAIBackend
    from reasoner.strategy import get_strategy

    async with OpenAIBackend(thinking_server.base_url, "fake-model") as backend:
        solution = await get_strategy("few-shot-cot", seed=0).solve(QUESTION, backend)
    data = solution_data(solution)
    (reason,) = [n for n in data["traces"][0]["nodes"] if n["kind"] == "model"]
    thought = data["strings"][reason["reasonings"][0]]
    assert thought.startswith("First guess: the answer is") and reason["reasoning_tokens"] == 24
    assert "First guess" not in data["strings"][reason["outputs"][0]]
    assert solution.answer is not None and f"the answer is {solution.answer}." not in thought


def test_solve_trace_prints_the_thinking_apart(thinking_server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert _solve(thinking_server, "--trace") == 0
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "(24 thinking)" in text and "[thought: First guess: the answer is" in text


playwright = pytest.importorskip("playwright.sync_api")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_the_explorer_shows_thinking_collapsed_apart_from_the_output(thinking_server: FakeOpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "trace.html"
    assert _solve(thinking_server, "--trace-html", str(path)) == 0
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page: Any = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(path.as_uri())
            page.locator('.trace svg .node[data-node-id="reason"]').click()
            fold = page.locator("#node-reasoning")
            assert fold.count() == 1 and fold.get_attribute("open") is None  # collapsed until asked
            assert not fold.locator("pre").is_visible()
            fold.locator("summary").click()
            assert fold.locator("pre").is_visible()
            assert (fold.locator("pre").text_content() or "").startswith("First guess: the answer is")
            output = page.text_content("#node-output") or ""
            assert "The answer is" in output and "First guess" not in output
            assert "(thinking 24)" in (page.text_content("#details") or "")
            assert errors == []
        finally:
            browser.close()
