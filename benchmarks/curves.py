"""Scaling curves of a run: self-consistency accuracy for k = 1..K, and accuracy against tokens.

    reasoner curves runs/sc16            # writes runs/sc16/sc_curve.png, pareto.png, curves.json
    reasoner curves sc.bank --data questions.jsonl --out curves/   # the k-curve from a bank alone

Self-consistency at k from one run of K samples per question: for each question, `resamples`
random k-subsets of its K recorded sample answers are majority-voted and
the share of right votes is that question's expected accuracy at k (as search-and-learn draws
subsets of its N samples). Accuracy at k is the mean over questions; its 95% interval is a
normal interval over questions (mean ± 1.96 · sd / √n, clipped to [0, 1]), which covers the
question sampling, the larger part of the error on a few hundred questions. A tie goes to the
answer seen first in the subset, whose order is random, so ties are broken fairly; k = K is one
vote of all samples in their own order, the strategy's rule, so it is the run's SC@K (except where
the strategy broke a tie by log-probabilities, which the recorded answers do not carry).

A strategy counts as self-consistency here when its trace details hold the per-sample `answers`
and it drew all K of them (no early stopping); a run with an adaptive rule draws fewer and is
left out of the k-curve (it is a point on the Pareto plot).

Pareto: every strategy and variant of the run as (tokens per question, accuracy); the frontier
joins those that no other beats on both (fewer or equal tokens and higher or equal accuracy).
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoner.answers import extract_answer, is_correct
from reasoner.bank import recorded
from reasoner.bench.report import read_run, summarize
from reasoner.bench.runfolder import RunDirError, iter_jsonl
from reasoner.data import Problem
from reasoner.io import write_json_atomic
from reasoner.numbers import Tolerance

__all__ = ["CurvePoint", "Curves", "ParetoPoint", "bank_answers", "pareto", "sample_answers", "sc_curve", "write_bank_curve", "write_curves"]

Z95 = 1.96


@dataclass(frozen=True)
class CurvePoint:
    k: int
    accuracy: float
    low: float
    high: float


@dataclass(frozen=True)
class ParetoPoint:
    label: str
    tokens: float
    accuracy: float
    frontier: bool


@dataclass
class Curves:
    sc: dict[str, list[CurvePoint]]  # label -> accuracy at k = 1..K
    pareto: list[ParetoPoint]
    files: list[Path]
    notes: list[str]


def sample_answers(run_dir: Path) -> dict[str, dict[str, list[str | None]]]:
    """label -> question id -> the answer of each sample, for strategies that drew all of theirs."""
    out: dict[str, dict[str, list[str | None]]] = {}
    path = run_dir / "traces.jsonl"
    if not path.exists():
        return out
    for _, _, row in iter_jsonl(path):
        if row is None:
            continue
        details = row.get("details") or {}
        answers = details.get("answers")
        if not isinstance(answers, list) or not answers:
            continue
        drawn, cap = details.get("samples_drawn", len(answers)), details.get("samples_cap", len(answers))
        if drawn != cap:
            out.setdefault(row["strategy"], {})  # adaptive: marked, so it is left out as a whole
            out[row["strategy"]]["\x00adaptive"] = []
            continue
        out.setdefault(row["strategy"], {})[row["id"]] = [None if a is None else str(a) for a in answers]
    return {label: qs for label, qs in out.items() if "\x00adaptive" not in qs}


def bank_answers(bank: Path, problems: list[Problem]) -> dict[str, list[str | None]]:
    """Question id -> the answer of each recorded sample, from a bank file alone. A request belongs
    to the question whose text it contains (the last one named, as few-shot exemplars come first);
    where several requests hold one question (other strategies' prompts), the one with the most
    samples counts, so a self-consistency bank gives its K samples."""
    by_text = {p.question: p.id for p in problems}
    out: dict[str, list[str | None]] = {}
    for request, samples in recorded(bank):
        text = request.get("prompt") or "\n".join(str(m.get("content", "")) for m in request.get("messages") or [])
        found = [(text.rfind(q), qid) for q, qid in by_text.items() if q in text]
        if not found or len(samples) <= len(out.get(max(found)[1], [])):
            continue
        out[max(found)[1]] = [extract_answer(str(c.get("text", ""))) for c in samples]
    return out


def _vote(answers: list[str | None]) -> str | None:
    """The majority; a tie goes to the answer seen first (in a random subset's order: a fair draw)."""
    counts = Counter(a for a in answers if a is not None)  # a Counter keeps first-seen order
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a, c in counts.items() if c == top)


def sc_curve(
    answers: dict[str, list[str | None]], golds: dict[str, str | None], *, resamples: int = 200, seed: int = 0,
    tolerance: Tolerance | None = None,
) -> list[CurvePoint]:
    """Accuracy at k = 1..K (K: the fewest samples any question has) by resampling k-subsets."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    ids = [q for q in answers if q in golds]
    if not ids:
        return []
    top = min(len(answers[q]) for q in ids)
    rng = random.Random(seed)
    # Each distinct answer judged once per question, not once per subset.
    right = {q: {a: is_correct(a, golds[q], tolerance) for a in set(answers[q]) if a is not None} for q in ids}
    points = []
    for k in range(1, top + 1):
        draws = 1 if k == top else resamples
        per_question = []
        for q in ids:
            pool = answers[q][:top]
            wins = 0
            for _ in range(draws):
                voted = _vote(pool if k == top else rng.sample(pool, k))
                wins += voted is not None and right[q][voted]
            per_question.append(wins / draws)
        n = len(per_question)
        mean = sum(per_question) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in per_question) / (n - 1)) if n > 1 else 0.0
        half = Z95 * sd / math.sqrt(n)
        points.append(CurvePoint(k, mean, max(0.0, mean - half), min(1.0, mean + half)))
    return points


def pareto(summary: dict[str, Any]) -> list[ParetoPoint]:
    """Each strategy with results as (tokens per question, accuracy), frontier marked."""
    raw = [
        (label, f["prompt_tokens_per_question"] + f["completion_tokens_per_question"], f["accuracy"])
        for label, f in summary["strategies"].items()
        if f["n"]
    ]
    points = []
    for label, tokens, acc in raw:
        beaten = any(
            (t <= tokens and a >= acc) and (t < tokens or a > acc) for other, t, a in raw if other != label
        )
        points.append(ParetoPoint(label, tokens, acc, not beaten))
    return sorted(points, key=lambda p: p.tokens)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _can_plot(notes: list[str]) -> bool:
    try:
        _plt()
    except ImportError:
        notes.append("no pictures: matplotlib is not installed (`pip install matplotlib`)")
        return False
    return True


@contextmanager
def _figure(path: Path, title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (6.4, 4.2)) -> Iterator[Any]:
    """Axes to draw on; labelled, gridded and saved to `path` when the block ends."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=size)
    try:
        yield ax
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def plot_sc(curves: dict[str, list[CurvePoint]], title: str, path: Path) -> None:
    labels = ("samples voted (k)", "accuracy (%), 95% interval over questions")
    with _figure(path, f"{title}: self-consistency at k samples", *labels) as ax:
        for label, points in curves.items():
            ks = [p.k for p in points]
            ax.plot(ks, [100 * p.accuracy for p in points], marker="o", markersize=3, label=label)
            ax.fill_between(ks, [100 * p.low for p in points], [100 * p.high for p in points], alpha=0.2)


def plot_pareto(
    points: list[ParetoPoint], title: str, path: Path, *, tokens: str = "prompt + completion", size: tuple[float, float] = (6.4, 4.2)
) -> None:
    """`tokens` names what the x axis counts; a plot of many points may want a larger `size` (inches)."""
    labels = (f"tokens per question ({tokens}, log scale)", "accuracy (%)")
    with _figure(path, f"{title}: accuracy against tokens", *labels, size=size) as ax:
        inner = [p for p in points if not p.frontier]
        front = [p for p in points if p.frontier]
        ax.scatter([p.tokens for p in inner], [100 * p.accuracy for p in inner], color="0.55", label="dominated")
        ax.plot([p.tokens for p in front], [100 * p.accuracy for p in front], "o-", color="C3", label="Pareto frontier")
        for p in points:
            ax.annotate(p.label, (p.tokens, 100 * p.accuracy), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_xscale("log")


def write_bank_curve(bank: Path, problems: list[Problem], out: Path, *, resamples: int = 200, seed: int = 0) -> Curves:
    """The k-curve of a bank file against the golds of `problems`; files written into `out`."""
    answers = bank_answers(bank, problems)
    notes = [] if answers else [f"{bank}: no recorded request holds any of the {len(problems)} questions"]
    golds = {p.id: p.gold for p in problems}
    sc = {bank.name: sc_curve(answers, golds, resamples=resamples, seed=seed)} if answers else {}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "curves.json", {"resamples": resamples, "seed": seed, "bank": str(bank),
                                            "questions": len(answers), "self_consistency": {k: [p.__dict__ for p in v] for k, v in sc.items()}})
    files = [out / "curves.json"]
    if sc and not _can_plot(notes):
        return Curves(sc, [], files, notes)
    if sc:
        plot_sc(sc, f"{bank.name}, {len(answers)} questions", out / "sc_curve.png")
        files.append(out / "sc_curve.png")
    return Curves(sc, [], files, notes)


def write_curves(run_dir: str | os.PathLike[str], *, resamples: int = 200, seed: int = 0) -> Curves:
    """Compute both curves of a run folder; write curves.json and the PNGs (with matplotlib)."""
    run_dir = Path(run_dir)
    run, records, notes = read_run(run_dir)
    if not records:
        raise RunDirError(f"{run_dir} holds no results yet")
    summary = summarize(run, records)
    spec = run["settings"].get("tolerance")
    tolerance = Tolerance.parse(spec) if spec else None
    golds: dict[str, dict[str, str | None]] = {}
    for r in records:
        golds.setdefault(r.strategy, {})[r.id] = r.gold
    sc = {
        label: sc_curve(qs, golds.get(label, {}), resamples=resamples, seed=seed, tolerance=tolerance)
        for label, qs in sample_answers(run_dir).items()
    }
    sc = {label: points for label, points in sc.items() if points}
    front = pareto(summary)
    if not sc:
        notes.append("no self-consistency run with all its samples recorded: no k-curve")
    write_json_atomic(
        run_dir / "curves.json",
        {
            "resamples": resamples,
            "seed": seed,
            "self_consistency": {label: [p.__dict__ for p in points] for label, points in sc.items()},
            "pareto": [p.__dict__ for p in front],
        },
    )
    files = [run_dir / "curves.json"]
    if not _can_plot(notes):
        return Curves(sc, front, files, notes)
    title = summary["benchmark"]
    if sc:
        plot_sc(sc, title, run_dir / "sc_curve.png")
        files.append(run_dir / "sc_curve.png")
    plot_pareto(front, title, run_dir / "pareto.png")
    files.append(run_dir / "pareto.png")
    return Curves(sc, front, files, notes)

