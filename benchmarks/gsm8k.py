"""The GSM8K benchmark runner: several strategies, one backend, the same questions; crash-safe and resumable.

    reasoner bench gsm8k --strategy few-shot-cot --strategy zero-shot-cot \\
        --model http://127.0.0.1:8000/v1 --limit 200 --concurrency 16 --out runs/cot
    reasoner bench gsm8k ... --out runs/cot --resume      # after a crash or Ctrl-C
    reasoner report runs/cot [--scoring lm-eval-strict]   # the report again, or rescored

From Python (labels let one strategy run with two settings side by side):

    config = BenchConfig({"k=2": get_strategy("few-shot-cot", k=2), "k=8": get_strategy("few-shot-cot")},
                         out="runs/k", model="http://127.0.0.1:8000/v1", limit=100)
    result = asyncio.run(run_gsm8k(config))   # result.report.summary is summary.json

Questions run concurrently (`--concurrency`, and the backend bounds its own requests in flight);
the strategies of a run take turns on blocks of that many questions, so a partial run compares
them on nearly the same questions (see `job_order`). A failed question (backend unreachable
after its retries, a tool crash, a strategy error) is recorded with its error and the run goes on.

Files in the run folder
-----------------------
run.json
    {"settings": ..., "sessions": [...]}. settings: task; reasoner_version; model (the spec with
    any URL credentials removed, --model-name, backend.describe(), which never holds a key);
    strategies (label -> strategy.settings(), every option); templates (a hash of every prompt
    file in strategies/prompts); data (path, sha256, split, question and answer fields, limit,
    sample, seed, number of questions, ids_sha256 of the chosen ids in order); scoring.
    sessions: one entry per start or resume (time, concurrency, records already done, errored
    records set aside to run again).
    `--resume` refuses to go on when the settings differ and names the keys that do (backend
    knobs that cannot change an answer, such as timeouts and max_in_flight, are not compared).
results.jsonl
    One JSON object per line, one line per (strategy, question), appended as each question
    finishes, flushed and fsync'ed: strategy, id, question, gold (the normalised number),
    prediction (our extraction: the strategy's own answer), prediction_lm_eval_strict,
    prediction_lm_eval_flexible (lm-evaluation-harness's filters on the final text; null where
    they find nothing), correct (under the run's --scoring), correct_ours, correct_lm_eval_strict,
    correct_lm_eval_flexible, text (the final text), calls, prompt_tokens, completion_tokens,
    latency_s, error (null, or why the question failed), session, started_at and finished_at
    (unix seconds). A crash loses at most the questions in flight; a line cut off by a crash is
    dropped (and reported) on --resume, and the question runs again.
traces.jsonl
    One line per results line, written just before it: strategy, id, details (the final answer's
    details, e.g. votes) and trace (the executed graph of calls, node-link JSON).
summary.json
    scoring, records, expected_records, complete, wall_s, and per strategy ("strategies": label ->
    n, correct, accuracy, ci95 (95% Wilson interval), answered, no_answer, errors,
    calls_per_question, prompt_tokens_per_question, completion_tokens_per_question,
    latency_s_per_question, wall_s, questions_per_minute, disagreements_with_ours), and "paired":
    McNemar's exact test between each pair of strategies on their common questions.
errors.jsonl
    Written by `--resume --retry-errors`: each record that had ended in an error, with its trace
    ({"result": ..., "trace": ...}), moved here from results.jsonl and traces.jsonl before its
    question runs again.
report.md
    The table, the paired comparisons, how often the lm-eval rules disagree with ours, published
    reference numbers for the same methods (on other models), and the settings.
accuracy_vs_tokens.png
    Accuracy against tokens per question, when matplotlib is installed (the `report` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import reasoner
from reasoner.answers import ScoringRule, is_correct, score
from reasoner.backends.base import Backend
from reasoner.backends.spec import open_backend
from reasoner.data import DataError, Problem, Split, gsm8k_path, load_jsonl
from reasoner.strategy import Strategy, get_strategy
from reasoner.strategies.common import templates

from reasoner.bench.report import Report, iter_jsonl, read_jsonl, write_report

__all__ = ["BenchConfig", "BenchError", "BenchResult", "run_gsm8k", "select_problems"]

# Backend settings that change how a request is carried, never what it returns, and file
# locations that may move between machines (the model's name and the data's sha256 stay compared).
_OPERATIONAL = {"max_in_flight", "n_threads", "connect_timeout", "read_timeout", "max_attempts", "backoff_base", "backoff_max", "path"}
_PLAIN_EVERY_S = 10.0


class BenchError(Exception):
    """The run cannot start or go on as asked (e.g. resuming with other settings)."""


@dataclass
class BenchConfig:
    #: Strategy names, instances, or labels mapped to instances (to compare two settings of one strategy).
    strategies: Sequence[str | Strategy] | Mapping[str, Strategy]
    out: str | os.PathLike[str]
    model: str | None = None  # a model spec; None: the embedded model, or the backend given to run_gsm8k
    model_name: str | None = None
    #: Passed to `open_backend` with the spec (e.g. engine_args for a vllm: model).
    backend_options: dict[str, Any] = field(default_factory=dict)
    split: Split = "test"
    data: str | os.PathLike[str] | None = None
    question_field: str = "question"
    answer_field: str = "answer"
    limit: int | None = None
    sample: int | None = None
    seed: int | None = None  # for --sample
    concurrency: int = 8
    resume: bool = False
    #: On resume, run the questions that ended in an error again (their records move to errors.jsonl).
    retry_errors: bool = False
    scoring: ScoringRule = "ours"


@dataclass
class BenchResult:
    out: Path
    report: Report
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


# -- questions -----------------------------------------------------------------------------------


def select_problems(config: BenchConfig) -> tuple[list[Problem], Path]:
    """The chosen questions, in data-file order, and the file they came from."""
    if config.limit is not None and config.sample is not None:
        raise BenchError("choose --limit or --sample, not both")
    path = gsm8k_path(config.split, config.data).resolve()
    # Ids of a file named directly follow its own name; the split files get stable gsm8k-* ids.
    own_file = config.data is not None and Path(config.data).is_file()
    problems = load_jsonl(
        path,
        question_field=config.question_field,
        answer_field=config.answer_field,
        id_prefix=None if own_file else f"gsm8k-{config.split}",
    )
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise DataError(f"{path}: question id {p.id!r} occurs more than once; results are kept by id")
        seen.add(p.id)
    if config.limit is not None:
        problems = problems[: config.limit]
    if config.sample is not None:
        if config.sample > len(problems):
            raise DataError(f"--sample {config.sample} is more than the {len(problems)} questions in {path}")
        chosen = random.Random(config.seed or 0).sample(range(len(problems)), config.sample)
        problems = [problems[i] for i in sorted(chosen)]
    if not problems:
        raise DataError(f"{path} holds no questions")
    return problems, path


def _labelled(strategies: Sequence[str | Strategy] | Mapping[str, Strategy]) -> dict[str, Strategy]:
    if isinstance(strategies, Mapping):
        return dict(strategies)
    out: dict[str, Strategy] = {}
    for s in strategies:
        strategy = get_strategy(s)
        if strategy.name in out:
            raise BenchError(f"strategy {strategy.name!r} is given twice; label the settings apart with a mapping")
        out[strategy.name] = strategy
    if not out:
        raise BenchError("name at least one strategy")
    return out


# -- settings ------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        elif not entry.name.startswith("."):
            yield f"{prefix}{entry.name}", entry


def template_digests() -> dict[str, str]:
    """A short hash of every prompt file the strategies ship (templates and exemplar data)."""
    out = {}
    for name, entry in _walk(files("reasoner.strategies") / "prompts"):
        if name.endswith(".j2"):
            out[name] = templates.digest(name)
        elif name.endswith((".jsonl", ".json", ".txt")):
            out[name] = hashlib.sha256(entry.read_bytes()).hexdigest()[:12]
    return out


def public_spec(spec: str) -> str:
    """The model spec without any user:password@ a URL may carry."""
    if spec.startswith(("http://", "https://")):
        parts = urlsplit(spec)
        if "@" in parts.netloc:
            return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return spec


def run_settings(
    config: BenchConfig, backend: Backend | None, strategies: dict[str, Strategy], problems: list[Problem], path: Path
) -> dict[str, Any]:
    """The settings run.json records; with `backend` None, all but the backend's description."""
    spec = config.model or (backend.name if backend is not None else "local")
    description = backend.describe() if backend is not None else {}
    settings = {
        "task": "gsm8k",
        "reasoner_version": reasoner.__version__,
        "model": {
            "spec": public_spec(spec),
            "model_name": config.model_name,
            # describe() holds no key, but a base URL may carry user:password@.
            "backend": {k: public_spec(v) if isinstance(v, str) else v for k, v in description.items()},
        },
        "strategies": {label: s.settings() for label, s in strategies.items()},
        "templates": template_digests(),
        "data": {
            "path": str(path),
            "sha256": _sha256_file(path),
            "split": config.split,
            "question_field": config.question_field,
            "answer_field": config.answer_field,
            "limit": config.limit,
            "sample": config.sample,
            "seed": config.seed if config.sample is not None else None,
            "questions": len(problems),
            "ids_sha256": hashlib.sha256("\n".join(p.id for p in problems).encode()).hexdigest()[:16],
        },
        "scoring": config.scoring,
    }
    return json.loads(json.dumps(settings, default=str))  # the form it will have once read back


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def settings_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old → new' for each setting that differs, ignoring transport-only backend knobs."""
    missing = object()

    def show(value: Any) -> str:
        return "(absent)" if value is missing else json.dumps(value)

    a, b = _flatten(old), _flatten(new)
    diffs = []
    for key in sorted(a.keys() | b.keys()):
        if (key.startswith("model.backend.") and key.rsplit(".", 1)[1] in _OPERATIONAL) or key == "data.path":
            continue
        if key.startswith("templates.") and key not in a:
            continue  # a prompt file added since the run began cannot have been used by it
        before, after = a.get(key, missing), b.get(key, missing)
        if before != after:
            diffs.append(f"{key}: {show(before)} → {show(after)}")
    return diffs


# -- the run folder ----------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ResultStore:
    """results.jsonl and traces.jsonl: appended a line at a time, each line flushed and fsync'ed.

    A question's trace is written before its result, so a result line is the mark that the
    question is done; recovery drops traces whose result never made it.

    Lines are written and flushed to the OS at once, so a killed process loses nothing it wrote.
    The fsync that protects them from a power cut runs on a background thread, covering every
    line written since its last one (group commit): a synchronous fsync per line would stall the
    event loop, and with it every question in flight, for milliseconds per record.
    """

    def __init__(self, run_dir: Path) -> None:
        self.results_path = run_dir / "results.jsonl"
        self.traces_path = run_dir / "traces.jsonl"
        self._files: list[IO[bytes]] = []

    def recover(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The records already written, after repairing what a crash may have left."""
        notes = []
        results = read_jsonl(self.results_path)
        if results.torn is not None:
            os.truncate(self.results_path, results.good_end)
            notes.append(
                f"results.jsonl ended in an incomplete line ({len(results.torn)} bytes, cut off by a crash); "
                "dropped it: that question runs again"
            )
        done = {(r["strategy"], r["id"]) for r in results.rows}
        if self.traces_path.exists():
            keep: set[tuple[str, str]] = set()
            drop = 0
            for _, _, row in iter_jsonl(self.traces_path):
                key = None if row is None else (row["strategy"], row["id"])
                if key in done and key not in keep:
                    keep.add(key)
                else:
                    drop += 1
            if drop:
                self._rewrite_traces(done)
                notes.append(f"traces.jsonl: dropped {drop} trace(s) of questions cut off before their result was written")
        return results.rows, notes

    def set_aside_errors(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Move the records that ended in an error, with their traces, to errors.jsonl, so those
        questions run again; returns the records kept. Nothing is deleted: errors.jsonl keeps each
        failure (one {"result", "trace"} line) for the post-mortem."""
        failed = [r for r in records if r.get("error") is not None]
        if not failed:
            return records
        keys = {(r["strategy"], r["id"]) for r in failed}
        traces = {}  # only the failed questions' traces: the file may hold thousands of large graphs
        if self.traces_path.exists():
            for _, _, row in iter_jsonl(self.traces_path):
                if row is not None and (key := (row["strategy"], row["id"])) in keys:
                    traces[key] = row
        with (self.results_path.parent / "errors.jsonl").open("ab") as archive:
            for r in failed:
                line = {"result": r, "trace": traces.get((r["strategy"], r["id"]))}
                archive.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
            archive.flush()
            os.fsync(archive.fileno())
        # The archive is durable before anything leaves results.jsonl; a crash in between at
        # worst archives a failure twice.
        kept = [r for r in records if r.get("error") is None]
        _write_atomic(self.results_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        if self.traces_path.exists():
            self._rewrite_traces({(r["strategy"], r["id"]) for r in kept})
        return kept

    def _rewrite_traces(self, done: set[tuple[str, str]]) -> None:
        tmp = self.traces_path.with_name("traces.jsonl.tmp")
        kept: set[tuple[str, str]] = set()
        with tmp.open("wb") as out:
            for _, _, row in iter_jsonl(self.traces_path):
                if row is not None and (key := (row["strategy"], row["id"])) in done and key not in kept:
                    kept.add(key)
                    out.write(json.dumps(row).encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.traces_path)

    def __enter__(self) -> ResultStore:
        self._traces = self.traces_path.open("ab")
        self._results = self.results_path.open("ab")
        self._files = [self._traces, self._results]
        _fsync_dir(self.results_path.parent)
        self._dirty = threading.Event()
        self._closing = False
        self._syncer = threading.Thread(target=self._sync_loop, name="results-fsync", daemon=True)
        self._syncer.start()
        return self

    def _sync_loop(self) -> None:
        while not self._closing:
            self._dirty.wait()
            self._dirty.clear()
            for f in self._files:
                os.fsync(f.fileno())

    def __exit__(self, *exc: object) -> None:
        self._closing = True
        self._dirty.set()
        self._syncer.join()
        for f in self._files:
            os.fsync(f.fileno())
            f.close()

    def append(self, record: dict[str, Any], trace: dict[str, Any]) -> None:
        # One write per line: a crash can only tear the line being written, never an earlier one.
        for f, row in ((self._traces, trace), (self._results, record)):
            f.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
            f.flush()
        self._dirty.set()


# -- one question ------------------------------------------------------------------------------------


def root_cause(error: str | None, trace: dict[str, Any]) -> str | None:
    """The error that made a question fail: the first failed step's own error, not the
    "depends on failed node" its dependants repeat."""
    if error is None:
        return None
    roots = [n for n in trace.get("nodes", []) if n.get("status") == "failed" and "upstream" not in n]
    if not roots:
        return error
    first = f"{roots[0].get('id')}: {roots[0].get('error')}"
    return first if len(roots) == 1 else f"{first} (and {len(roots) - 1} more failed steps)"


async def solve_one(
    label: str, strategy: Strategy, problem: Problem, backend: Backend, scoring: ScoringRule, session: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(result record, trace record) for one question. Errors become part of the record."""
    started = time.time()
    answer, text, error = None, "", None
    calls = prompt_tokens = completion_tokens = 0
    latency = 0.0
    trace: dict[str, Any] = {}
    details: dict[str, Any] = {}
    try:
        solution = await strategy.solve(problem.question, backend)
    except Exception as exc:  # noqa: BLE001 - a strategy that cannot even build its graph fails this question only
        error = f"{type(exc).__name__}: {exc}"
        latency = time.time() - started
    else:
        answer, text, error = solution.answer, solution.text, root_cause(solution.error, solution.trace)
        u = solution.usage
        calls, prompt_tokens, completion_tokens, latency = u.calls, u.prompt_tokens, u.completion_tokens, u.latency_s
        trace, details = solution.trace, solution.details
    strict, strict_ok = score(text, problem.answer_field, "lm-eval-strict")
    flexible, flexible_ok = score(text, problem.answer_field, "lm-eval-flexible")
    verdicts = {"ours": is_correct(answer, problem.gold), "lm-eval-strict": strict_ok, "lm-eval-flexible": flexible_ok}
    record = {
        "strategy": label,
        "id": problem.id,
        "question": problem.question,
        "gold": problem.gold,
        "prediction": answer,
        "prediction_lm_eval_strict": strict,
        "prediction_lm_eval_flexible": flexible,
        "correct": verdicts[scoring],
        "correct_ours": verdicts["ours"],
        "correct_lm_eval_strict": strict_ok,
        "correct_lm_eval_flexible": flexible_ok,
        "text": text,
        "calls": calls,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_s": round(latency, 4),
        "error": error,
        "session": session,
        "started_at": round(started, 4),
        "finished_at": round(time.time(), 4),
    }
    return record, {"strategy": label, "id": problem.id, "details": details, "trace": trace}


# -- progress --------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    total: int
    done: int = 0
    correct: int = 0
    errors: int = 0
    completion_tokens: int = 0  # this session's, for the rate
    done_now: int = 0  # this session's

    def add(self, record: dict[str, Any], now: bool) -> None:
        self.done += 1
        self.correct += bool(record["correct"])
        self.errors += record["error"] is not None
        if now:
            self.done_now += 1
            self.completion_tokens += record["completion_tokens"]

    def accuracy(self) -> str:
        return f"{100 * self.correct / self.done:5.1f}%" if self.done else "    –"


class ProgressView:
    """A live table per strategy on a terminal; a plain line now and then otherwise (logs, pipes)."""

    def __init__(self, console: Console, tallies: dict[str, _Tally]) -> None:
        self.console = console
        self.tallies = tallies
        self.started = time.monotonic()
        self.last_plain = self.started
        self.live = console.is_terminal and not console.is_dumb_terminal
        self.progress: Progress | None = None
        self.tasks: dict[str, Any] = {}

    def _fields(self, t: _Tally) -> dict[str, str]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "acc": f"acc {t.accuracy()}",
            "err": f"[red]{t.errors} err[/red]" if t.errors else "0 err",
            "tps": f"{t.completion_tokens / elapsed:7.1f} tok/s",
        }

    def __enter__(self) -> ProgressView:
        if self.live:
            width = max(len(label) for label in self.tallies)
            self.progress = Progress(
                TextColumn(f"[bold]{{task.description:<{width}}}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[acc]}"),
                TextColumn("{task.fields[err]}"),
                TextColumn("{task.fields[tps]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                refresh_per_second=4,
            )
            for label, t in self.tallies.items():
                self.tasks[label] = self.progress.add_task(label, total=t.total, completed=t.done, **self._fields(t))
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, record: dict[str, Any]) -> None:
        label = record["strategy"]
        t = self.tallies[label]
        t.add(record, now=True)
        if self.progress is not None:
            self.progress.update(self.tasks[label], advance=1, **self._fields(t))
            return
        now = time.monotonic()
        if t.done == t.total or now - self.last_plain >= _PLAIN_EVERY_S:
            self.last_plain = now
            self.print_plain(*([label] if t.done == t.total else self.tallies))

    def print_plain(self, *labels: str) -> None:
        elapsed = time.monotonic() - self.started
        for label in labels:
            t = self.tallies[label]
            eta = (t.total - t.done) * elapsed / t.done_now if t.done_now else None
            eta_text = "done" if t.done == t.total else (f"ETA {eta:.0f}s" if eta is not None else "ETA –")
            self.console.print(
                f"{label}: {t.done}/{t.total} · acc {t.accuracy().strip()} · {t.errors} errors · "
                f"{t.completion_tokens / max(elapsed, 1e-9):.1f} tok/s · {eta_text}",
                highlight=False,
                soft_wrap=True,
            )


# -- the run ---------------------------------------------------------------------------------------------


async def run_gsm8k(config: BenchConfig, *, backend: Backend | None = None, console: Console | None = None) -> BenchResult:
    """Run (or resume) a benchmark into `config.out` and write its report.

    A `backend` given here is used as is and left open; otherwise `config.model` is opened and
    closed. Ctrl-C (or SIGTERM) stops launching questions, cancels those in flight, and returns
    with `interrupted` set; everything finished is on disk.
    """
    console = console or Console()
    if config.concurrency < 1:
        raise BenchError(f"--concurrency must be at least 1, got {config.concurrency}")
    strategies = _labelled(config.strategies)
    problems, path = select_problems(config)  # before touching the run folder: a bad data line loses nothing
    out = Path(config.out)
    run_file = out / "run.json"
    previous: dict[str, Any] | None = None
    if run_file.is_file():
        if not config.resume:
            raise BenchError(f"{out} already holds a run; add --resume to continue it, or choose another --out")
        previous = json.loads(run_file.read_text(encoding="utf-8"))
    elif (out / "results.jsonl").exists():
        raise BenchError(f"{out} holds results.jsonl but no run.json; refusing to guess its settings")
    elif config.resume:
        note = f"nothing to resume in {out}: starting a new run"
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)

    own_backend = backend is None
    if backend is None:
        config = replace(config, model=config.model or "local")
        # Refuse a mismatched resume before opening the model, which can take minutes (vLLM).
        if previous is not None:
            _check_resume(out, previous, run_settings(config, None, strategies, problems, path), ignore_backend=True)
        backend = await open_backend(config.model or "local", model_name=config.model_name, **config.backend_options)
    try:
        settings = run_settings(config, backend, strategies, problems, path)
        if previous is not None:
            _check_resume(out, previous, settings)
        out.mkdir(parents=True, exist_ok=True)
        store = ResultStore(out)
        records, notes = store.recover()
        retried = 0
        if config.retry_errors:
            kept = store.set_aside_errors(records)
            retried, records = len(records) - len(kept), kept
            if retried:
                notes.append(f"{retried} record(s) that ended in an error moved to errors.jsonl; those questions run again")
        for note in notes:
            console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
        sessions = (previous or {}).get("sessions", [])
        session = len(sessions)
        sessions.append(
            {
                "session": session,
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "concurrency": config.concurrency,
                "records_before": len(records),
                "retried_errors": retried,
            }
        )
        _write_atomic(run_file, json.dumps({"settings": settings, "sessions": sessions}, indent=2) + "\n")

        done = {(r["strategy"], r["id"]) for r in records}
        tallies = {label: _Tally(total=len(problems)) for label in strategies}
        for r in records:
            if r["strategy"] in tallies:
                tallies[r["strategy"]].add(r, now=False)
        order = job_order(problems, list(strategies), config.concurrency)
        jobs = deque((label, p) for label, p in order if (label, p.id) not in done)
        model = settings["model"]["backend"].get("model") or settings["model"]["spec"]
        console.print(
            f"GSM8K: {len(problems)} questions × {len(strategies)} strategies on {model}, "
            f"{config.concurrency} at a time → {out}/"
            + (f" (resuming: {len(done)} records done, {len(jobs)} to go)" if previous else ""),
            highlight=False,
            soft_wrap=True,
        )
        with store, ProgressView(console, tallies) as view:
            interrupted = await _drain(jobs, strategies, backend, config, session, store, view)
    finally:
        if own_backend:
            await backend.aclose()
    report = write_report(out)
    return BenchResult(out=out, report=report, interrupted=interrupted, notes=notes + report.notes)


def _check_resume(out: Path, previous: dict[str, Any], settings: dict[str, Any], ignore_backend: bool = False) -> None:
    diffs = settings_differences(previous["settings"], settings)
    if ignore_backend:
        diffs = [d for d in diffs if not d.startswith(("model.backend.", "model.backend:"))]
    if diffs:
        raise BenchError(
            f"cannot resume {out}: these settings differ from its run.json:\n  "
            + "\n  ".join(diffs)
            + "\nResume with the run's original settings, or start a new run with another --out."
        )


def job_order(problems: list[Problem], labels: list[str], block: int) -> Iterator[tuple[str, Problem]]:
    """Blocks of `block` questions; within a block, one strategy after the other.

    Blocks keep the strategies level, so a partial run compares them on nearly the same
    questions; within a block, one strategy's prompts follow each other, so a backend's prefix
    cache (llama.cpp keeps the last prompt; vLLM caches prefixes) reuses what they share, such
    as few-shot exemplars. On the embedded model this halves the run time.
    """
    for start in range(0, len(problems), block):
        chunk = problems[start : start + block]
        for label in labels:
            for problem in chunk:
                yield label, problem


async def _drain(
    jobs: deque[tuple[str, Problem]],
    strategies: dict[str, Strategy],
    backend: Backend,
    config: BenchConfig,
    session: int,
    store: ResultStore,
    view: ProgressView,
) -> bool:
    """Run the jobs `config.concurrency` at a time; True if a signal stopped them."""

    async def worker() -> None:
        while jobs:
            label, problem = jobs.popleft()
            record, trace = await solve_one(label, strategies[label], problem, backend, config.scoring, session)
            # No await between the result and its write: a cancellation cannot split them.
            store.append(record, trace)
            view.update(record)

    workers = [asyncio.create_task(worker()) for _ in range(min(config.concurrency, len(jobs)))]
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        for w in workers:
            w.cancel()

    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or not Unix
            pass
    try:
        if workers:
            finished, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            failed = [w for w in finished if not w.cancelled() and w.exception() is not None]
            if failed:  # e.g. the disk is full: no point going on
                stop()
                await asyncio.gather(*workers, return_exceptions=True)
                raise failed[0].exception()  # type: ignore[misc]
            if stopped:
                await asyncio.gather(*workers, return_exceptions=True)
    except asyncio.CancelledError:
        stop()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    return stopped
