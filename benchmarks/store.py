"""The crash-safe store of a run: results.jsonl and traces.jsonl, and errors.jsonl for retried failures.

Every line goes through `reasoner.io.json_line`, which scrubs secrets, so nothing a server echoes
(a key as completion text or as a model id) reaches the disk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from reasoner.bench.record import Record
from reasoner.bench.runfolder import iter_jsonl, read_jsonl, to_records
from reasoner.io import fsync_dir, json_line, write_jsonl_atomic


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
        self.appended = 0  # records written by this session

    def recover(self) -> tuple[list[Record], list[str]]:
        """The records already written, after repairing what a crash may have left."""
        notes = []
        results = read_jsonl(self.results_path)
        if results.torn is not None:
            os.truncate(self.results_path, results.good_end)
            notes.append(
                f"results.jsonl ended in an incomplete line ({len(results.torn)} bytes, cut off by a crash); "
                "dropped it: that question runs again"
            )
        records = to_records(self.results_path, results.rows)
        done = {r.key for r in records}
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
        return records, notes

    def set_aside_errors(self, records: list[Record]) -> list[Record]:
        """Move the records that ended in an error, with their traces, to errors.jsonl, so those
        questions run again; returns the records kept. Nothing is deleted: errors.jsonl keeps each
        failure (one {"result", "trace"} line) for the post-mortem."""
        failed = [r for r in records if r.error is not None]
        if not failed:
            return records
        keys = {r.key for r in failed}
        traces = {}  # only the failed questions' traces: the file may hold thousands of large graphs
        if self.traces_path.exists():
            for _, _, row in iter_jsonl(self.traces_path):
                if row is not None and (key := (row["strategy"], row["id"])) in keys:
                    traces[key] = row
        with (self.results_path.parent / "errors.jsonl").open("ab") as archive:
            for r in failed:
                archive.write(json_line({"result": r.model_dump(mode="json"), "trace": traces.get(r.key)}))
            archive.flush()
            os.fsync(archive.fileno())
        # The archive is durable before anything leaves results.jsonl; a crash in between at
        # worst archives a failure twice.
        kept = [r for r in records if r.error is None]
        write_jsonl_atomic(self.results_path, (r.model_dump(mode="json") for r in kept))
        if self.traces_path.exists():
            self._rewrite_traces({r.key for r in kept})
        return kept

    def _rewrite_traces(self, done: set[tuple[str, str]]) -> None:
        kept: set[tuple[str, str]] = set()

        def rows() -> Iterator[dict[str, Any]]:
            for _, _, row in iter_jsonl(self.traces_path):
                if row is not None and (key := (row["strategy"], row["id"])) in done and key not in kept:
                    kept.add(key)
                    yield row

        write_jsonl_atomic(self.traces_path, rows())

    def __enter__(self) -> ResultStore:
        self._traces = self.traces_path.open("ab")
        self._results = self.results_path.open("ab")
        self._files = [self._traces, self._results]
        fsync_dir(self.results_path.parent)
        self._dirty = threading.Event()
        self._closing = False
        self._sync_error: OSError | None = None
        self._syncer = threading.Thread(target=self._sync_loop, name="results-fsync", daemon=True)
        self._syncer.start()
        return self

    def _sync_loop(self) -> None:
        while not self._closing:
            self._dirty.wait()
            self._dirty.clear()
            try:
                for f in self._files:
                    os.fsync(f.fileno())
            except OSError as exc:  # the disk went away or filled: the next append reports it
                self._sync_error = exc
                return

    def __exit__(self, *exc: object) -> None:
        self._closing = True
        self._dirty.set()
        self._syncer.join()
        for f in self._files:
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                pass  # already reported by the append that failed; closing must not hide it
            finally:
                try:
                    f.close()
                except OSError:
                    pass

    def append(self, record: Record, trace: dict[str, Any]) -> None:
        if self._sync_error is not None:
            raise self._sync_error
        # One write per line: a crash can only tear the line being written, never an earlier one.
        for f, row in ((self._traces, trace), (self._results, record.model_dump(mode="json"))):
            f.write(json_line(row))
            f.flush()
        self.appended += 1
        self._dirty.set()
