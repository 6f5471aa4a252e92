"""The GSM8K benchmark runner: several strategies, one backend, the same questions; crash-safe and resumable.

    reasoner bench gsm8k --strategy few-shot-cot --strategy zero-shot-cot \\
        --model http://127.0.0.1:8000/v1 --limit 200 --concurrency 16 --out runs/cot
    reasoner bench gsm8k ... --out runs/cot --resume      # after a crash or Ctrl-C
    reasoner report runs/cot [--scoring lm-eval-cot-strict]   # the report again, or rescored

From Python (labels let one strategy run with two settings side by side):

    config = BenchConfig({"k=2": get_strategy("few-shot-cot", k=2), "k=8": get_strategy("few-shot-cot")},
                         out="runs/k", model="http://127.0.0.1:8000/v1", limit=100)
    result = asyncio.run(run_gsm8k(config))   # result.report.summary is summary.json

This module runs the whole; each job has its own module: `questions` (which questions, in what
order), `settings` (run.json's settings and the --resume check), `lock` (one run per folder),
`store` (the crash-safe JSONL files), `scoring` (one question, every scoring rule), `progress`
(the live display), `record` (a result line), and `report` (the figures).

Questions run concurrently (`--concurrency`, and the backend bounds its own requests in flight);
the strategies of a run take turns on blocks of that many questions, so a partial run compares
them on nearly the same questions (see `job_order`). A failed question (backend unreachable
after its retries, a tool crash, a strategy error) is recorded with its error and the run goes on.

`reasoner bench` exits 0 when every question ran without an error; 1 when some question ended in
an error (said on the last line, with the command that runs them again), or the run could not go
on (bad data, a backend that cannot be opened, a full disk: what is saved is said, with the
command that resumes); 2 for a usage error (bad options, --out in use by another run or holding
another run's settings); 130 when interrupted (Ctrl-C or SIGTERM; the resume command is printed).

Files in the run folder
-----------------------
run.json
    {"settings": ..., "sessions": [...]}. settings: task; benchmark (GSM8K, or the data file's
    name, or --name); reasoner_version; model (the spec with any URL credentials removed,
    --model-name, backend.describe(), which never holds a key); strategies (label ->
    strategy.settings(), every option); templates (a hash of every prompt file in
    strategies/prompts); data (path, sha256, split (null for a file of one's own), question and
    answer fields, limit, sample, seed, number of questions, ids_sha256 of the chosen ids in
    order); scoring; tolerance (--tolerance, null for the default rule). sessions: one entry per
    start or resume (time, concurrency, records already done, errored records set aside to run
    again; with --bank, the bank's path, mode and usage: recorded against new calls and tokens).
    `--resume` refuses to go on when the settings differ and names the keys that do (backend
    knobs that cannot change an answer, such as timeouts and max_in_flight, are not compared).
results.jsonl
    One `Record` per line, one line per (strategy, question), appended as each question
    finishes, flushed and fsync'ed (see `reasoner.bench.record` for the fields). A crash loses
    at most the questions in flight; a line cut off by a crash is dropped (and reported) on
    --resume, and the question runs again.
traces.jsonl
    One line per results line, written just before it: strategy, id, details (the final answer's
    details, e.g. votes) and trace (the executed graph of calls, node-link JSON).
run.lock
    Present while a run holds the folder: its pid, host and start time.
summary.json, report.md, accuracy_vs_tokens.png
    Written by `reasoner.bench.report` at the end of each session (the plot needs matplotlib).
errors.jsonl
    Written by `--resume --retry-errors`: each record that had ended in an error, with its trace
    ({"result": ..., "trace": ...}), moved here from results.jsonl and traces.jsonl before its
    question runs again.

Everything written there, and everything printed, passes through `reasoner.secrets.scrub` in
`reasoner.io`, so a key a server echoes back never reaches the disk or the screen.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from reasoner.backends.base import Backend
from reasoner.backends.spec import open_backend
from reasoner.bank import BankMode, SampleBank
from reasoner.bench.lock import RunLock, describe_stale, prepare_folder
from reasoner.bench.progress import ProgressView, Tally, plural
from reasoner.bench.questions import BenchError, Questions, job_order, labelled, select_problems
from reasoner.bench.record import RULES, Record
from reasoner.bench.report import Report, write_report
from reasoner.bench.scoring import solve_one
from reasoner.bench.settings import check_resume, run_settings, settings_differences
from reasoner.bench.store import ResultStore
from reasoner.data import Problem, Split
from reasoner.io import ScrubbedStream, write_json_atomic
from reasoner.numbers import Tolerance
from reasoner.strategy import Strategy

__all__ = ["BenchConfig", "BenchError", "BenchResult", "EXIT_CODES", "StorageError", "errors_line", "run_gsm8k", "select_problems", "settings_differences"]


EXIT_CODES = """exit status: 0 every question ran without an error; 1 some question ended in an error (the last
line says how many), or the run could not go on (bad data, a backend that cannot be opened, a full
disk); 2 a usage error (bad options, --out in use by another run or holding another run); 130
interrupted (Ctrl-C or SIGTERM: the command that resumes is printed)."""


def errors_line(n: int) -> str:
    return f"{plural(n, 'question')} ended in an error"


class StorageError(Exception):
    """Writing the run folder failed (a full disk, say). The message says what is saved."""


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
    id_field: str = "id"  # a data file's field holding each question's id (else <file>-<line>)
    #: How answers are judged where a question sets no tolerance of its own (None: the default rule).
    tolerance: Tolerance | None = None
    #: What the report calls the data; default: GSM8K for its splits, else the data file's name.
    name: str | None = None
    limit: int | None = None
    sample: int | None = None
    seed: int | None = None  # for --sample
    concurrency: int = 8
    resume: bool = False
    #: On resume, run the questions that ended in an error again (their records move to errors.jsonl).
    retry_errors: bool = False
    scoring: str = "ours"  # one of reasoner.bench.record.RULES
    #: A sample bank file (`reasoner.bank`): every model call recorded there, and replayed from it.
    #: Not part of the resume check: a replayed sample is the sample a live call would return.
    bank: str | os.PathLike[str] | None = None
    bank_mode: BankMode = "record"


@dataclass
class BenchResult:
    out: Path
    report: Report
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def _note(console: Console, text: str) -> None:
    console.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


async def run_gsm8k(config: BenchConfig, *, backend: Backend | None = None, console: Console | None = None) -> BenchResult:
    """Run (or resume) a benchmark into `config.out` and write its report.

    A `backend` given here is used as is and left open; otherwise `config.model` is opened and
    closed. Ctrl-C (or SIGTERM) stops launching questions, cancels those in flight, and returns
    with `interrupted` set; everything finished is on disk. A failed write (a full disk) raises
    `StorageError` saying what was saved.
    """
    console = console or Console(file=ScrubbedStream("stdout"))
    if config.concurrency < 1:
        raise BenchError(f"--concurrency must be at least 1, got {config.concurrency}")
    if config.scoring not in RULES:
        raise BenchError(f"unknown scoring rule {config.scoring!r}; expected one of {', '.join(RULES)}")
    strategies = labelled(config.strategies)
    questions = select_problems(config)  # before touching the run folder: a bad data line loses nothing
    out = Path(config.out)
    created = prepare_folder(out)
    with RunLock(out, remove_folder_if_empty=created) as lock:
        for note in (describe_stale(lock.previous), lock.unsupported):
            if note is not None:
                _note(console, note)
        return await _run_locked(config, strategies, questions, out, backend, console)


async def _run_locked(
    config: BenchConfig,
    strategies: dict[str, Strategy],
    questions: Questions,
    out: Path,
    backend: Backend | None,
    console: Console,
) -> BenchResult:
    run_file = out / "run.json"
    previous: dict[str, Any] | None = None
    if run_file.is_file():
        if not config.resume:
            raise BenchError(f"{out} already holds a run; add --resume to continue it, or choose another --out")
        previous = json.loads(run_file.read_text(encoding="utf-8"))
    elif (out / "results.jsonl").exists():
        raise BenchError(f"{out} holds results.jsonl but no run.json; refusing to guess its settings")
    elif config.resume:
        _note(console, f"nothing to resume in {out}: starting a new run")

    own_backend = backend is None
    if backend is None:
        config = replace(config, model=config.model or "local")
        # Refuse a mismatched resume before opening the model, which can take minutes (vLLM).
        if previous is not None:
            check_resume(out, previous, run_settings(config, None, strategies, questions), ignore_backend=True)
        backend = await open_backend(config.model or "local", model_name=config.model_name, **config.backend_options)
    store = ResultStore(out)
    records: list[Record] = []
    bank: SampleBank | None = None
    try:
        if config.bank is not None:
            bank = SampleBank(backend, config.bank, config.bank_mode)
        settings = run_settings(config, backend, strategies, questions)
        if previous is not None:
            check_resume(out, previous, settings)
        records, notes = store.recover()
        retried = 0
        if config.retry_errors:
            kept = store.set_aside_errors(records)
            retried, records = len(records) - len(kept), kept
            if retried:
                notes.append(f"{plural(retried, 'record')} that ended in an error moved to errors.jsonl; those questions run again")
        for note in notes:
            _note(console, note)
        sessions = (previous or {}).get("sessions", [])
        session = len(sessions)
        sessions.append(
            {
                "session": session,
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "concurrency": config.concurrency,
                "records_before": len(records),
                "retried_errors": retried,
                **({"bank": {"path": str(config.bank), "mode": config.bank_mode}} if bank else {}),
            }
        )
        write_json_atomic(run_file, {"settings": settings, "sessions": sessions})

        done = {r.key for r in records}
        tallies = {label: Tally(total=len(questions.problems)) for label in strategies}
        for r in records:
            if r.strategy in tallies:
                tallies[r.strategy].add(r, now=False)
        order = job_order(questions.problems, list(strategies), config.concurrency)
        jobs = deque((label, p) for label, p in order if (label, p.id) not in done)
        model = settings["model"]["backend"].get("model") or settings["model"]["spec"]
        console.print(
            f"{questions.benchmark}: {plural(len(questions.problems), 'question')} × "
            f"{plural(len(strategies), 'strategy', 'strategies')} on {model}, "
            f"{config.concurrency} at a time → {out}/"
            + (f" (resuming: {len(done)} records done, {len(jobs)} to go)" if previous else ""),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        with store, ProgressView(console, tallies) as view:
            interrupted = await _drain(jobs, strategies, bank or backend, config, session, store, view)
        if bank is not None:
            sessions[-1]["bank"]["usage"] = bank.usage.model_dump()
            write_json_atomic(run_file, {"settings": settings, "sessions": sessions})
            notes.append(bank.usage.line())
        report = write_report(out)
    except OSError as exc:
        raise StorageError(_storage_message(out, exc, len(records) + store.appended)) from None
    finally:
        if bank is not None:
            bank.close()
        if own_backend:
            await backend.aclose()
    return BenchResult(out=out, report=report, interrupted=interrupted, notes=notes + report.notes)


def _storage_message(out: Path, exc: OSError, saved: int) -> str:
    what = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    return (
        f"writing the run folder failed: {what}{where}. {plural(saved, 'finished record')} "
        f"{'is' if saved == 1 else 'are'} saved in {out}/results.jsonl (the report was not written); "
        "free some space, then continue with --resume"
    )


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
            record, trace = await solve_one(label, strategies[label], problem, backend, config.scoring, session, config.tolerance)
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
                stopped = False  # not an interrupt: the exception says what happened
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
