"""Reading a run folder: its JSONL files (repairing only what a crash can leave) and run.json."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reasoner.bench.record import Record


class RunDirError(ValueError):
    """A run folder is missing files or holds damaged ones; the message says which."""


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


def to_records(path: Path, rows: list[dict[str, Any]]) -> list[Record]:
    out = []
    for lineno, row in enumerate(rows, 1):
        try:
            out.append(Record.model_validate(row))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "(the line)"
            raise RunDirError(f"{path}:{lineno}: not a result record ({where}: {first['msg']})") from None
    return out


def read_run(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Record], list[str]]:
    """(run.json, the result records, notes) of a run folder, without changing it."""
    run_dir = Path(run_dir)
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        raise RunDirError(f"{run_dir} is not a benchmark run: it has no run.json")
    try:
        run = json.loads(run_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{run_file}: not valid JSON ({exc})") from None
    results = run_dir / "results.jsonl"
    contents = read_jsonl(results)
    notes = []
    if contents.torn:
        notes.append("results.jsonl ends in an incomplete line (a crash mid-write); it was left out")
    records: dict[tuple[str, str], Record] = {}
    repeated: list[tuple[str, str]] = []
    for record in to_records(results, contents.rows):
        if record.key in records:
            repeated.append(record.key)
        records[record.key] = record
    if repeated:
        # One line however many: two runs interleaved on one folder repeat hundreds of keys.
        example = " / ".join(repeated[0])
        notes.append(
            f"results.jsonl holds {len(repeated)} record(s) more than once (e.g. {example}); the last of each counts"
        )
    return run, list(records.values()), notes
