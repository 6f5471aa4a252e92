"""Loading GSM8K (and any JSONL set of arithmetic word problems) with errors that name file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel

from reasoner.answers import parse_gold

Split = Literal["train", "test"]

# The official release (MIT licence), fetched once where the machine is online.
GSM8K_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{split}.jsonl"
ENV_VAR = "REASONER_GSM8K"


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and line."""


class Problem(BaseModel):
    id: str
    question: str
    gold: str  # the normalised final number
    answer_field: str  # the answer as the data set writes it (e.g. GSM8K's solution and "#### N")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "reasoner" / "gsm8k"


def gsm8k_path(split: Split = "test", data: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Where the split lives: `data` (a file or a folder), else $REASONER_GSM8K, else the cache,
    downloading it there first if needed."""
    for source in (data, os.environ.get(ENV_VAR)):
        if source:
            path = Path(source)
            path = path / f"{split}.jsonl" if path.is_dir() else path
            if not path.is_file():
                origin = "--data" if source == data else f"${ENV_VAR}"
                raise DataError(f"{origin} points at {path}, which does not exist")
            return path
    cached = cache_dir() / f"{split}.jsonl"
    if cached.is_file():
        return cached
    if not download:
        raise DataError(f"GSM8K {split} split not found: pass --data or set ${ENV_VAR}")
    return _download(split, cached)


def _download(split: Split, target: Path) -> Path:
    url = GSM8K_URL.format(split=split)
    try:
        response = httpx.get(url, timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise DataError(
            f"could not download GSM8K {split} from {url} ({exc}); pass --data PATH or set ${ENV_VAR} to a folder "
            f"holding {split}.jsonl"
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(response.content)
    load_jsonl(partial)  # refuse to cache a broken download
    partial.replace(target)
    return target


def load_jsonl(
    path: str | os.PathLike[str], *, question_field: str = "question", answer_field: str = "answer", id_prefix: str | None = None
) -> list[Problem]:
    """Problems from a JSONL file. Answers may be numbers or GSM8K-style text ending in `#### N`."""
    path = Path(path)
    prefix = id_prefix if id_prefix is not None else path.stem
    problems = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            for field in (question_field, answer_field):
                if field not in row:
                    raise DataError(f"{where}: missing field {field!r} (fields: {', '.join(row) or 'none'})")
            raw_answer = row[answer_field]
            try:
                gold = parse_gold(raw_answer)
            except ValueError as exc:
                raise DataError(f"{where}: field {answer_field!r}: {exc}") from None
            problems.append(
                Problem(
                    id=str(row.get("id", f"{prefix}-{lineno}")),
                    question=str(row[question_field]),
                    gold=gold,
                    answer_field=str(raw_answer),
                )
            )
    return problems


def load_gsm8k(split: Split = "test", data: str | os.PathLike[str] | None = None) -> list[Problem]:
    return load_jsonl(gsm8k_path(split, data), id_prefix=f"gsm8k-{split}")
