"""The results explorer: one self-contained HTML file of a run folder.

    reasoner report runs/cot --html        # writes runs/cot/explorer.html

The page needs no network (no CDN, no fonts, no fetch: the data is inlined as JSON and the
script and styles are in the template), so it opens from a laptop's disk or a CI artifact. It
shows the summary table; a grid of questions × strategies (right, wrong, no answer, error) with
a filter per strategy ("right with few-shot-cot, wrong with self-consistency") and a text search;
and, for the question clicked, each strategy's trace drawn as a graph (nodes coloured by kind,
edges by dependency; a graph where every node has at most one parent, such as a search, is laid
out as a tree), with a node's prompt, outputs, tokens, latency and error on click.

Texts are pooled (a few-shot prompt shared by every sample of every question is stored once)
and each is cut at `TEXT_LIMIT` characters; all of it passes through `reasoner.secrets.scrub_obj`.
"""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from reasoner import secrets
from reasoner.bench.record import Record
from reasoner.bench.report import read_run, summarize
from reasoner.bench.runfolder import iter_jsonl
from reasoner.io import write_atomic
from reasoner.types import Solution

__all__ = ["TEXT_LIMIT", "explorer_data", "solution_data", "verdict", "write_explorer", "write_solution_page"]

TEXT_LIMIT = 20_000


class _Strings:
    """A pool of texts, each stored once; nodes refer to them by index."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, text: str | None) -> int | None:
        if text is None:
            return None
        if len(text) > TEXT_LIMIT:
            text = text[:TEXT_LIMIT] + f"… [cut at {TEXT_LIMIT:,} characters]"
        if text not in self.index:
            self.index[text] = len(self.items)
            self.items.append(text)
        return self.index[text]


def verdict(record: Record) -> str:
    if record.error:
        return "error"
    if record.prediction is None:
        return "none"
    return "right" if record.correct else "wrong"


def _prompt(request: Any) -> str | None:
    if not isinstance(request, dict):
        return None
    if request.get("prompt") is not None:
        return str(request["prompt"])
    messages = request.get("messages") or []
    return "\n\n".join(f"[{m.get('role')}] {m.get('content')}" for m in messages if isinstance(m, dict)) or None


def _outputs(output: Any) -> list[str]:
    if output is None:
        return []
    if isinstance(output, dict) and isinstance(output.get("choices"), list):
        return [str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in output["choices"]]
    if isinstance(output, str):
        return [output]
    return [json.dumps(output, indent=1, ensure_ascii=False)]


def _reasonings(output: Any) -> list[str | None]:
    """Each choice's thinking (a reasoning model's), None where it had none: shown apart from its output."""
    if isinstance(output, dict) and isinstance(output.get("choices"), list):
        return [c.get("reasoning") if isinstance(c, dict) else None for c in output["choices"]]
    return []


def _trace(trace: dict[str, Any], strings: _Strings) -> dict[str, Any]:
    nodes = []
    for n in trace.get("nodes", []):
        nodes.append(
            {
                "id": str(n.get("id")),
                "kind": str(n.get("kind", "")),
                "label": str(n.get("label", n.get("id"))),
                "status": str(n.get("status", "")),
                "prompt": strings.add(_prompt(n.get("request"))),
                "outputs": [strings.add(t) for t in _outputs(n.get("output"))],
                "reasonings": [strings.add(r) for r in _reasonings(n.get("output"))],
                "reasoning_tokens": n.get("reasoning_tokens"),
                "prompt_tokens": n.get("prompt_tokens"),
                "completion_tokens": n.get("completion_tokens"),
                "latency_s": n.get("latency_s"),
                "error": strings.add(n.get("error")) if n.get("error") else None,
            }
        )
    edges = [
        [str(e.get("source")), str(e.get("target")), "waited" if e.get("waited") else "forward" if e.get("forward") else ""]
        for e in trace.get("edges", [])
    ]
    return {"nodes": nodes, "edges": edges}


def explorer_data(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able object."""
    run_dir = Path(run_dir)
    run, records, _ = read_run(run_dir)
    summary = summarize(run, records)
    labels = list(summary["strategies"])
    strings = _Strings()
    traces: list[dict[str, Any]] = []
    trace_of: dict[tuple[str, str], int] = {}
    path = run_dir / "traces.jsonl"
    if path.exists():
        for _, _, row in iter_jsonl(path):
            if row is not None and isinstance(row.get("trace"), dict):
                trace_of[(str(row.get("strategy")), str(row.get("id")))] = len(traces)
                traces.append(_trace(row["trace"], strings))
    questions: dict[str, dict[str, Any]] = {}
    for r in records:
        q = questions.setdefault(r.id, {"id": r.id, "question": r.question, "gold": r.gold, "cells": {}})
        q["cells"][r.strategy] = {
            "v": verdict(r),
            "prediction": r.prediction,
            "error": r.error,
            "tokens": r.prompt_tokens + r.completion_tokens,
            "trace": trace_of.get(r.key, -1),
        }
    rows = [
        {
            "label": label,
            "n": f["n"],
            "accuracy": f["accuracy"],
            "ci95": f["ci95"],
            "answered": f["answered"],
            "no_answer": f["no_answer"],
            "errors": f["errors"],
            "calls": f["calls_per_question"],
            "tokens_in": f["prompt_tokens_per_question"],
            "tokens_out": f["completion_tokens_per_question"],
        }
        for label, f in summary["strategies"].items()
    ]
    settings = run.get("settings", {})
    model = settings.get("model", {})
    data = {
        "title": summary["benchmark"],
        "model": (model.get("backend") or {}).get("model") or model.get("spec"),
        "scoring": summary["scoring"],
        "strategies": labels,
        "summary": rows,
        "paired": summary.get("paired", []),
        "questions": list(questions.values()),
        "traces": traces,
        "strings": strings.items,
    }
    return secrets.scrub_obj(data)  # type: ignore[no-any-return]


def _inline_json(data: Any) -> str:
    # "<" as \u003c: no "</script>" or "<!--" in the data can end or confuse the script element.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render(data: dict[str, Any]) -> str:
    template = files("reasoner.bench") / "templates" / "explorer.html.j2"
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = env.from_string(template.read_text(encoding="utf-8"))
    return page.render(title=data["title"], data_json=Markup(_inline_json(data)))


def solution_data(solution: Solution, model: str | None = None) -> dict[str, Any]:
    """The page of one solved question (`reasoner solve --trace-html`): its trace, no grid figures."""
    strings = _Strings()
    u = solution.usage
    verdict_ = "error" if solution.error else "none" if solution.answer is None else "answer"
    cell = {"v": verdict_, "prediction": solution.answer, "error": solution.error, "tokens": u.total_tokens, "trace": 0}
    data = {
        "title": "reasoner solve",
        "model": model,
        "scoring": "none",
        "strategies": [solution.strategy],
        "summary": [],
        "paired": [],
        "questions": [{"id": "question", "question": solution.question, "gold": None, "cells": {solution.strategy: cell}}],
        "traces": [_trace(solution.trace, strings)],
        "strings": strings.items,
    }
    return secrets.scrub_obj(data)  # type: ignore[no-any-return]


def write_solution_page(solution: Solution, path: str | os.PathLike[str], model: str | None = None) -> Path:
    """One question's trace as the explorer draws it, in one offline HTML file at `path`."""
    target = Path(path)
    write_atomic(target, render(solution_data(solution, model)))
    return target


def write_explorer(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the explorer of a run folder (default: RUN/explorer.html); its path."""
    run_dir = Path(run_dir)
    target = Path(out) if out is not None else run_dir / "explorer.html"
    write_atomic(target, render(explorer_data(run_dir)))
    return target
