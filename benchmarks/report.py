"""The figures of a benchmark run, from its folder: `summary.json`, `report.md`, `accuracy_vs_tokens.png`.

Everything is computed from `run.json` and `results.jsonl` alone, so `reasoner report DIR` gives
the same report as the end of the run, for a finished run or one that was cut off.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from reasoner.bench.lm_eval import strict_rule_for, task_for
from reasoner.bench.record import CORRECT_FIELD, PREDICTION_FIELD, RULES, Record
from reasoner.bench.runfolder import JsonlContents, RunDirError, iter_jsonl, read_jsonl, read_run
from reasoner.bench.stats import Z95, error_bar, mcnemar_exact, wilson_interval
from reasoner.io import write_atomic, write_json_atomic

__all__ = [
    "CORRECT_FIELD", "PREDICTION_FIELD", "REFERENCES", "RULES", "JsonlContents", "Report", "RunDirError", "Z95",
    "iter_jsonl", "mcnemar_exact", "paired_comparisons", "read_jsonl", "read_run", "results_table", "summarize",
    "wilson_interval", "write_report",
]  # fmt: skip

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


def benchmark_name(settings: dict[str, Any]) -> str:
    """What the run was scored on: GSM8K, or the name of the data (runs from before names: GSM8K)."""
    return str(settings.get("benchmark") or settings.get("task", "gsm8k").upper())


def is_gsm8k(settings: dict[str, Any]) -> bool:
    """Whether the questions are GSM8K's own split, the only data the published figures are for."""
    return settings.get("data", {}).get("split") is not None and benchmark_name(settings) == "GSM8K"


# -- figures ---------------------------------------------------------------------------------------


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def wall_seconds(records: list[Record]) -> float:
    """Time from the first question started to the last finished, added up over sessions
    (a resumed run is not charged for the time it was stopped)."""
    sessions: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        sessions[r.session].append(r)
    return sum(max(r.finished_at for r in rs) - min(r.started_at for r in rs) for rs in sessions.values())


def fallback_figures(records: list[Record]) -> dict[str, Any]:
    """How often the strategy answered through another one (PAL, least-to-most and plan-dag fall
    back to chain of thought), so a "pal" score says how much of it was really CoT."""
    to = Counter(r.fallback for r in records if r.fallback)
    n = len(records)
    return {"fallbacks": sum(to.values()), "fallback_rate": sum(to.values()) / n if n else None, "fallback_to": dict(to)}


def strategy_figures(records: list[Record], scoring: str, strategy_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    n = len(records)
    correct = sum(r.verdict(scoring) for r in records)
    errors = sum(r.error is not None for r in records)
    answered = sum(r.error is None and r.predicted(scoring) is not None for r in records)
    low, high = wilson_interval(correct, n)
    wall = wall_seconds(records) if records else 0.0
    task = task_for(strategy_settings or {})
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci95": [low, high],
        "answered": answered,
        "no_answer": n - answered - errors,
        "errors": errors,
        "calls_per_question": _mean(r.calls for r in records),
        "prompt_tokens_per_question": _mean(r.prompt_tokens for r in records),
        "completion_tokens_per_question": _mean(r.completion_tokens for r in records),
        "latency_s_per_question": _mean(r.latency_s for r in records),
        "wall_s": wall,
        "questions_per_minute": 60 * n / wall if wall > 0 else None,
        # How often another rule's verdict differs from ours on the same output.
        "disagreements_with_ours": {
            rule: sum(r.verdict(rule) != r.verdict("ours") for r in records) for rule in RULES[1:]
        },
        # The lm-eval task this strategy's prompt follows, and so the strict rule that fits it.
        "lm_eval": {"task": task, "strict_rule": strict_rule_for(task)},
        **fallback_figures(records),
    }


def paired_comparisons(by_strategy: dict[str, list[Record]], scoring: str) -> list[dict[str, Any]]:
    """McNemar's exact test for each pair of strategies, on the questions both have answered."""
    verdicts = {s: {r.id: r.verdict(scoring) for r in rs} for s, rs in by_strategy.items()}
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


def summarize(run: dict[str, Any], records: list[Record], scoring: str | None = None) -> dict[str, Any]:
    settings = run["settings"]
    scoring = scoring or settings["scoring"]
    if scoring not in RULES:
        raise ValueError(f"unknown scoring rule {scoring!r}; expected one of {', '.join(RULES)}")
    labels = list(settings["strategies"])
    by_strategy: dict[str, list[Record]] = {label: [] for label in labels}
    for r in records:
        by_strategy.setdefault(r.strategy, []).append(r)
    expected = settings["data"]["questions"] * len(labels)
    return {
        "task": settings.get("task", "gsm8k"),
        "benchmark": benchmark_name(settings),
        "scoring": scoring,
        "records": len(records),
        "expected_records": expected,
        "complete": len(records) >= expected,
        "wall_s": wall_seconds(records) if records else 0.0,
        "strategies": {
            label: strategy_figures(rs, scoring, settings["strategies"].get(label)) for label, rs in by_strategy.items()
        },
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
        title=f"{summary.get('benchmark', 'GSM8K')} · scoring: {summary['scoring']}{status}",
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
    out = [f"# {summary['benchmark']} benchmark: {model.get('backend', {}).get('model') or model['spec']}", ""]
    status = "complete" if summary["complete"] else f"partial ({summary['records']} of {summary['expected_records']} records)"
    out += [
        f"{data['questions']} questions from `{data['path']}`" + (f" (split {data['split']})" if data.get("split") else "") + ", "
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
    others = RULES[1:]
    disagreement_rows = [
        [label, f"`{f['lm_eval']['task']}` (`{f['lm_eval']['strict_rule']}`)", *(str(f["disagreements_with_ours"][rule]) for rule in others)]
        for label, f in summary["strategies"].items()
    ]
    out += [
        "Questions on which lm-evaluation-harness's exact-match rules judge the same output differently from ours "
        f"(the headline figures use `{scoring}`; `reasoner report DIR --scoring RULE` rescores). "
        "`lm-eval-strict` is the `gsm8k` task's `#### N` rule, `lm-eval-cot-strict` the `gsm8k_cot` tasks' "
        "`The answer is N.` rule; the lm-eval column names the task each strategy's prompt follows, and so the "
        "strict rule that fits its output.",
        "",
        _markdown_table(["strategy", "lm-eval task (strict rule)", *(f"{rule} vs ours" for rule in others)], disagreement_rows),
        "",
    ]

    fell_back = {label: f for label, f in summary["strategies"].items() if f["fallbacks"]}
    if fell_back:
        rows = [
            [label, str(f["fallbacks"]), _pct(f["fallback_rate"]), ", ".join(f"{k} ({v})" for k, v in sorted(f["fallback_to"].items()))]
            for label, f in fell_back.items()
        ]
        out += [
            "## Fallbacks",
            "",
            "Questions on which a strategy's own method gave up (a program that failed, a plan that did not parse) "
            "and another strategy answered: that share of its score is the other strategy's "
            "(*none*: no fallback was set, so the question went unanswered).",
            "",
            _markdown_table(["strategy", "fell back", "rate", "to"], rows),
            "",
        ]

    if is_gsm8k(settings):
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
    points = [(label, f["prompt_tokens_per_question"] + f["completion_tokens_per_question"], f)
              for label, f in summary["strategies"].items() if f["n"]]  # fmt: skip
    for label, x, f in points:
        y = f["accuracy"]
        below, above = error_bar(y, f["ci95"])
        ax.errorbar([x], [100 * y], yerr=[[100 * below], [100 * above]], fmt="o", capsize=4)
        ax.annotate(label, (x, 100 * y), textcoords="offset points", xytext=(6, 4))
    # A strategy that spent no tokens (every question failed before a call) has no place on a log
    # axis: it would vanish from the plot without a word.
    log = bool(points) and all(x > 0 for _, x, _ in points)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"tokens per question (prompt + completion{', log scale' if log else ''})")
    ax.set_ylabel("accuracy (%), 95% Wilson interval")
    ax.set_title(f"{summary['benchmark']}: accuracy against cost")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"![accuracy against tokens per question]({path.name})"


@dataclass
class Report:
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def write_report(run_dir: str | os.PathLike[str], scoring: str | None = None) -> Report:
    """Compute the figures of a run folder and write summary.json, report.md and the plot."""
    run_dir = Path(run_dir)
    run, records, notes = read_run(run_dir)
    summary = summarize(run, records, scoring)
    older = sum(r.correct_lm_eval_cot_strict is None for r in records)
    if older:
        notes.append(
            f"{older} record(s) come from a version without the lm-eval-cot-strict rule: it counts them as "
            "not matched (the other rules are unaffected)"
        )
    png = run_dir / "accuracy_vs_tokens.png"
    plot_note = plot(summary, png) if records else "No plot: no results yet."
    if not plot_note.startswith("!["):
        notes.append(plot_note)
    write_json_atomic(run_dir / "summary.json", summary)
    write_atomic(run_dir / "report.md", markdown_report(run, summary, plot_note))
    return Report(summary, notes)
