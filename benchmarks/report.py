"""The figures of a benchmark run, from its folder: `summary.json`, `report.md`, `accuracy_vs_tokens.png`.

Everything is computed from `run.json` and `results.jsonl` alone, so `reasoner report DIR` gives
the same report as the end of the run, for a finished run or one that was cut off.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

RULES = ("ours", "lm-eval-strict", "lm-eval-flexible")
#: The record fields holding each rule's verdict and prediction.
CORRECT_FIELD = {"ours": "correct_ours", "lm-eval-strict": "correct_lm_eval_strict", "lm-eval-flexible": "correct_lm_eval_flexible"}
PREDICTION_FIELD = {
    "ours": "prediction",
    "lm-eval-strict": "prediction_lm_eval_strict",
    "lm-eval-flexible": "prediction_lm_eval_flexible",
}
Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal

# Published GSM8K test accuracies, keyed by strategy name. Other models than ours: context only.
REFERENCES: dict[str, list[dict[str, Any]]] = {
    "few-shot-cot": [
        {
            "paper": "Wei et al. 2022, Chain-of-Thought Prompting Elicits Reasoning in Large Language Models",
            "model": "PaLM 540B",
            "setting": "8-shot chain of thought, greedy",
            "accuracy": 0.569,
        }
    ],
    "zero-shot-cot": [
        {
            "paper": "Kojima et al. 2022, Large Language Models are Zero-Shot Reasoners",
            "model": "InstructGPT text-davinci-002",
            "setting": "zero-shot CoT, two-stage prompting (plain zero-shot: 10.4%)",
            "accuracy": 0.407,
        }
    ],
    "self-consistency": [
        {
            "paper": "Wang et al. 2022, Self-Consistency Improves Chain of Thought Reasoning in Language Models",
            "model": "PaLM 540B",
            "setting": "8-shot CoT, majority vote over 40 sampled paths",
            "accuracy": 0.744,
        }
    ],
}


class RunDirError(ValueError):
    """A run folder is missing files or holds damaged ones; the message says which."""


# -- statistics ----------------------------------------------------------------------------------


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of b successes in b + c fair coin flips.

    b and c are the discordant pairs (A right and B wrong, and the reverse). Exact rational
    arithmetic, because 0.5**n underflows a float long before GSM8K's 1319 questions.
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


# -- reading a run folder --------------------------------------------------------------------------


@dataclass
class JsonlContents:
    rows: list[dict[str, Any]]
    #: Byte offset just past the last complete, valid line.
    good_end: int
    #: The incomplete or unreadable last line (from a crash mid-write), if there was one.
    torn: bytes | None = None


def iter_jsonl(path: Path) -> Iterator[tuple[int, int, dict[str, Any] | None]]:
    """(line number, offset after the line, row) for each line of a JSONL file this package wrote.

    A last line without its newline, or that does not parse, is a write cut off by a crash: it is
    yielded with row None. A bad line anywhere else means the file was damaged some other way.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        offset = 0
        for lineno, line in enumerate(f, 1):
            offset += len(line)
            last = offset == size
            row: Any = None
            if line.endswith(b"\n"):
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
            if isinstance(row, dict):
                yield lineno, offset, row
            elif last:
                yield lineno, offset, None
            else:
                raise RunDirError(f"{path}:{lineno}: not a JSON object; the file is damaged (only a torn last line is repaired)")


def read_jsonl(path: Path) -> JsonlContents:
    contents = JsonlContents(rows=[], good_end=0)
    if not path.exists():
        return contents
    for _, offset, row in iter_jsonl(path):
        if row is None:
            with path.open("rb") as f:
                f.seek(contents.good_end)
                contents.torn = f.read()
        else:
            contents.rows.append(row)
            contents.good_end = offset
    return contents


def read_run(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """(run.json, the result records, notes) of a run folder, without changing it."""
    run_dir = Path(run_dir)
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        raise RunDirError(f"{run_dir} is not a benchmark run: it has no run.json")
    try:
        run = json.loads(run_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunDirError(f"{run_file}: not valid JSON ({exc})") from None
    contents = read_jsonl(run_dir / "results.jsonl")
    notes = []
    if contents.torn:
        notes.append("results.jsonl ends in an incomplete line (a crash mid-write); it was left out")
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for row in contents.rows:
        key = (row["strategy"], row["id"])
        if key in records:
            notes.append(f"results.jsonl holds {key[0]} / {key[1]} twice; the last one counts")
        records[key] = row
    return run, list(records.values()), notes


# -- figures ---------------------------------------------------------------------------------------


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def wall_seconds(records: list[dict[str, Any]]) -> float:
    """Time from the first question started to the last finished, added up over sessions
    (a resumed run is not charged for the time it was stopped)."""
    sessions: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        sessions[r.get("session", 0)].append(r)
    return sum(max(r["finished_at"] for r in rs) - min(r["started_at"] for r in rs) for rs in sessions.values())


def strategy_figures(records: list[dict[str, Any]], scoring: str) -> dict[str, Any]:
    n = len(records)
    correct = sum(bool(r[CORRECT_FIELD[scoring]]) for r in records)
    errors = sum(r["error"] is not None for r in records)
    answered = sum(r["error"] is None and r[PREDICTION_FIELD[scoring]] is not None for r in records)
    low, high = wilson_interval(correct, n)
    wall = wall_seconds(records) if records else 0.0
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci95": [low, high],
        "answered": answered,
        "no_answer": n - answered - errors,
        "errors": errors,
        "calls_per_question": _mean(r["calls"] for r in records),
        "prompt_tokens_per_question": _mean(r["prompt_tokens"] for r in records),
        "completion_tokens_per_question": _mean(r["completion_tokens"] for r in records),
        "latency_s_per_question": _mean(r["latency_s"] for r in records),
        "wall_s": wall,
        "questions_per_minute": 60 * n / wall if wall > 0 else None,
        # How often another rule's verdict differs from ours on the same output.
        "disagreements_with_ours": {
            rule: sum(bool(r[CORRECT_FIELD[rule]]) != bool(r["correct_ours"]) for r in records) for rule in RULES[1:]
        },
    }


def paired_comparisons(by_strategy: dict[str, list[dict[str, Any]]], scoring: str) -> list[dict[str, Any]]:
    """McNemar's exact test for each pair of strategies, on the questions both have answered."""
    verdicts = {s: {r["id"]: bool(r[CORRECT_FIELD[scoring]]) for r in rs} for s, rs in by_strategy.items()}
    out = []
    for a, b in combinations(by_strategy, 2):
        common = verdicts[a].keys() & verdicts[b].keys()
        a_only = sum(verdicts[a][q] and not verdicts[b][q] for q in common)
        b_only = sum(verdicts[b][q] and not verdicts[a][q] for q in common)
        n = len(common)
        out.append(
            {
                "a": a,
                "b": b,
                "n": n,
                "accuracy_a": sum(verdicts[a][q] for q in common) / n if n else None,
                "accuracy_b": sum(verdicts[b][q] for q in common) / n if n else None,
                "a_right_b_wrong": a_only,
                "a_wrong_b_right": b_only,
                "p_value": mcnemar_exact(a_only, b_only),
            }
        )
    return out


def summarize(run: dict[str, Any], records: list[dict[str, Any]], scoring: str | None = None) -> dict[str, Any]:
    settings = run["settings"]
    scoring = scoring or settings["scoring"]
    if scoring not in RULES:
        raise ValueError(f"unknown scoring rule {scoring!r}; expected one of {', '.join(RULES)}")
    labels = list(settings["strategies"])
    by_strategy: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for r in records:
        by_strategy.setdefault(r["strategy"], []).append(r)
    expected = settings["data"]["questions"] * len(labels)
    return {
        "task": settings.get("task", "gsm8k"),
        "scoring": scoring,
        "records": len(records),
        "expected_records": expected,
        "complete": len(records) >= expected,
        "wall_s": wall_seconds(records) if records else 0.0,
        "strategies": {label: strategy_figures(rs, scoring) for label, rs in by_strategy.items()},
        "paired": paired_comparisons(by_strategy, scoring),
    }


# -- presentation --------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _row(label: str, f: dict[str, Any]) -> list[str]:
    return [
        label,
        _pct(f["accuracy"]),
        f"{100 * f['ci95'][0]:.1f}–{_pct(f['ci95'][1])}",
        str(f["n"]),
        str(f["answered"]),
        str(f["no_answer"]),
        str(f["errors"]),
        _num(f["calls_per_question"]),
        _num(f["prompt_tokens_per_question"], 0),
        _num(f["completion_tokens_per_question"], 0),
        _num(f["wall_s"]),
        _num(f["questions_per_minute"], 1).replace(",", ""),
    ]


HEADERS = ["strategy", "accuracy", "95% CI (Wilson)", "n", "answered", "no answer", "errors",
           "calls/q", "prompt tok/q", "completion tok/q", "wall s", "q/min"]  # fmt: skip


SHORT_HEADERS = ["strategy", "acc", "95% CI", "n", "ans", "none", "err", "calls", "tok in", "tok out", "wall s", "q/min"]


def results_table(summary: dict[str, Any]) -> Table:
    """The console table: `HEADERS` shortened to fit a terminal."""
    status = "" if summary["complete"] else f" — partial: {summary['records']}/{summary['expected_records']} records"
    table = Table(
        title=f"{summary['task'].upper()} · scoring: {summary['scoring']}{status}",
        caption="ans / none / err: answered, no answer, error; calls and tokens are per question",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    width = max((len(label) for label in summary["strategies"]), default=8)
    for i, header in enumerate(SHORT_HEADERS):
        if i == 0:
            table.add_column(header, style="bold", no_wrap=True, min_width=width)
        else:
            table.add_column(header, justify="right", no_wrap=True)
    for label, figures in summary["strategies"].items():
        table.add_row(*_row(label, figures))
    return table


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(run: dict[str, Any], summary: dict[str, Any], plot_note: str) -> str:
    settings = run["settings"]
    model = settings["model"]
    data = settings["data"]
    scoring = summary["scoring"]
    out = [f"# {summary['task'].upper()} benchmark: {model.get('backend', {}).get('model') or model['spec']}", ""]
    status = "complete" if summary["complete"] else f"partial ({summary['records']} of {summary['expected_records']} records)"
    out += [
        f"{data['questions']} questions from `{data['path']}` (split {data['split']}), "
        f"{len(summary['strategies'])} strategies, scoring `{scoring}`; run {status}.",
        "",
        "## Results",
        "",
        _markdown_table(HEADERS, [_row(label, f) for label, f in summary["strategies"].items()]),
        "",
        "Accuracy counts errors as wrong. *answered*: a number was extracted; *no answer*: the strategy "
        "finished without one; *errors*: the question failed (backend, tool or strategy error). "
        "Strategies ran side by side on one backend, so their wall times overlap.",
        "",
    ]

    out += ["## Paired comparisons", ""]
    if summary["paired"]:
        rows = [
            [p["a"], p["b"], str(p["n"]), _pct(p["accuracy_a"]), _pct(p["accuracy_b"]),
             str(p["a_right_b_wrong"]), str(p["a_wrong_b_right"]), f"{p['p_value']:.4g}"]
            for p in summary["paired"]
        ]  # fmt: skip
        out += [
            _markdown_table(
                ["A", "B", "questions", "acc A", "acc B", "A right, B wrong", "A wrong, B right", "p (McNemar exact)"], rows
            ),
            "",
            "Exact McNemar test: a two-sided binomial test on the discordant pairs, "
            "over the questions both strategies finished.",
            "",
        ]
    else:
        out += ["Only one strategy ran: nothing to compare.", ""]

    out += ["## Scoring rules", ""]
    disagreement_rows = [
        [label, *(str(f["disagreements_with_ours"][rule]) for rule in RULES[1:])] for label, f in summary["strategies"].items()
    ]
    out += [
        "Questions on which lm-evaluation-harness's exact-match rules judge the same output differently from ours "
        f"(the headline figures use `{scoring}`; `reasoner report DIR --scoring RULE` rescores):",
        "",
        _markdown_table(["strategy", "lm-eval-strict vs ours", "lm-eval-flexible vs ours"], disagreement_rows),
        "",
    ]

    refs = [(label, ref) for label in summary["strategies"] for ref in REFERENCES.get(label, [])]
    out += ["## Published reference numbers (reference, different model)", ""]
    if refs:
        rows = [[label, _pct(ref["accuracy"]), ref["model"], ref["setting"], ref["paper"]] for label, ref in refs]
        out += [
            "These are the papers' own GSM8K test accuracies on **different models** than this run's; "
            "they show what the method reached there, not what this model should reach.",
            "",
            _markdown_table(["strategy", "published accuracy", "model", "setting", "paper"], rows),
            "",
        ]
    else:
        out += ["No published figure is recorded for these strategies.", ""]

    out += ["## Accuracy against tokens", "", plot_note, ""]
    out += ["## Settings", "", "```json", json.dumps(settings, indent=2), "```", ""]
    return "\n".join(out)


def plot(summary: dict[str, Any], path: Path) -> str:
    """Draw accuracy (with its interval) against tokens per question; a note on what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "No plot: matplotlib is not installed (`pip install 'reasoner[report]'`)."
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, f in summary["strategies"].items():
        if not f["n"]:
            continue
        x = f["prompt_tokens_per_question"] + f["completion_tokens_per_question"]
        y = f["accuracy"]
        ax.errorbar([x], [100 * y], yerr=[[100 * (y - f["ci95"][0])], [100 * (f["ci95"][1] - y)]], fmt="o", capsize=4)
        ax.annotate(label, (x, 100 * y), textcoords="offset points", xytext=(6, 4))
    ax.set_xscale("log")
    ax.set_xlabel("tokens per question (prompt + completion, log scale)")
    ax.set_ylabel("accuracy (%), 95% Wilson interval")
    ax.set_title(f"{summary['task'].upper()}: accuracy against cost")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"![accuracy against tokens per question]({path.name})"


@dataclass
class Report:
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_report(run_dir: str | os.PathLike[str], scoring: str | None = None) -> Report:
    """Compute the figures of a run folder and write summary.json, report.md and the plot."""
    run_dir = Path(run_dir)
    run, records, notes = read_run(run_dir)
    summary = summarize(run, records, scoring)
    png = run_dir / "accuracy_vs_tokens.png"
    plot_note = plot(summary, png) if records else "No plot: no results yet."
    if not plot_note.startswith("!["):
        notes.append(plot_note)
    _write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    _write_atomic(run_dir / "report.md", markdown_report(run, summary, plot_note))
    return Report(summary, notes)
