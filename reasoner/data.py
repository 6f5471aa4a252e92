"""Loading GSM8K (and any JSONL set of arithmetic word problems) with one-line errors naming file, line and field."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx
from pydantic import BaseModel, ValidationError

from reasoner.answers import parse_gold, preview
from reasoner.numbers import Tolerance

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; the annotation alone needs it
    from importlib.resources.abc import Traversable

Split = Literal["train", "test"]

# The official release (MIT licence), pinned to the commit whose files are shipped, so that a
# download can be checked against the same sha256.
GSM8K_COMMIT = "3101c7d5072418e28b9008a6636bde82a006892c"
GSM8K_URL = (
    f"https://raw.githubusercontent.com/openai/grade-school-math/{GSM8K_COMMIT}/grade_school_math/data/"
    "{split}.jsonl"
)
# The sha256 of upstream's split files at that commit: what ships in reasoner/datasets/gsm8k/ (a
# test checks the shipped bytes), and what a download must match before it is cached.
GSM8K_SHA256: dict[Split, str] = {
    "test": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
    "train": "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
}
ENV_VAR = "REASONER_GSM8K"
# The copy shipped inside the package (package data, see pyproject.toml), so the first run needs no
# network. A module-level value so tests can point it elsewhere.
SHIPPED: Traversable = files("reasoner") / "datasets" / "gsm8k"


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and line."""


class Problem(BaseModel):
    id: str
    question: str
    gold: str  # the normalised final number
    answer_field: str  # the answer as the data set writes it (e.g. GSM8K's solution and "#### N")
    tolerance: Tolerance | None = None  # how this question's answers are judged; None: the run's rule


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "reasoner" / "gsm8k"


def shipped_path(split: Split) -> Path | None:
    """The split shipped with the package, as a file path; None where it is not installed (a
    build that left the package data out, or a trimmed install)."""
    resource = SHIPPED / f"{split}.jsonl"
    if not resource.is_file():
        return None
    if isinstance(resource, Path):
        return resource
    # Installed somewhere that is not a folder (a zip): the loaders read paths, so copy it out once,
    # checked, since that copy then stands in for the package's.
    cached = cache_dir() / f"{split}.jsonl"
    if not cached.is_file():
        _store(resource.read_bytes(), split, cached)
    return cached


def gsm8k_path(split: Split = "test", data: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Where the split lives: `data` (a file or a folder), else $REASONER_GSM8K, else the copy
    shipped with the package, else the cache, downloading it there first if allowed."""
    for source in (data, os.environ.get(ENV_VAR)):
        if source:
            path = Path(source)
            path = path / f"{split}.jsonl" if path.is_dir() else path
            if not path.is_file():
                origin = "--data" if source == data else f"${ENV_VAR}"
                raise DataError(f"{origin} points at {path}, which does not exist")
            return path
    shipped = shipped_path(split)
    if shipped is not None:
        return shipped
    cached = cache_dir() / f"{split}.jsonl"
    if cached.is_file():
        return cached
    if not download:
        raise DataError(f"GSM8K {split} split not found: pass --data or set ${ENV_VAR}")
    return _download(split, cached)


def _download(split: Split, target: Path) -> Path:
    """Only reached when the shipped copy is missing from the install."""
    url = GSM8K_URL.format(split=split)
    try:
        response = httpx.get(url, timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        # httpx's status errors run to two lines (a link to MDN); the error is one line.
        reason = f"HTTP {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError) else str(exc)
        raise DataError(
            f"could not download GSM8K {split} from {url} ({' '.join(reason.split()) or type(exc).__name__}); "
            f"pass --data PATH or set ${ENV_VAR} to a folder "
            f"holding {split}.jsonl"
        ) from exc
    return _store(response.content, split, target, origin=url)


def _store(content: bytes, split: Split, target: Path, *, origin: str | None = None) -> Path:
    """Write the split to `target`, refusing bytes that are not the release (a truncated or altered
    download would otherwise be cached and scored on for good)."""
    digest = hashlib.sha256(content).hexdigest()
    if digest != GSM8K_SHA256[split]:
        raise DataError(
            f"GSM8K {split} from {origin or 'the package'} has sha256 {digest}, not the release's "
            f"{GSM8K_SHA256[split]}; nothing was cached. Pass --data PATH or set ${ENV_VAR}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(content)
    partial.replace(target)
    return target


def _field_names(row: dict[str, object]) -> str:
    names = ", ".join(preview(name, 30) for name in list(row)[:12])
    return (names + (f", … ({len(row)} in all)" if len(row) > 12 else "")) or "none"


def _question(row: dict[str, object], field: str, where: str) -> str:
    """The question text: one field, or several joined with "+" (SVAMP: "Body+Question")."""
    names = [field] if field in row or "+" not in field else field.split("+")
    parts = []
    for name in names:
        if name not in row:
            raise DataError(f"{where}: missing field {name!r} (fields: {_field_names(row)})")
        value = row[name]
        if not isinstance(value, str):
            got = "null" if value is None else f"{type(value).__name__} {preview(value, 40)}"
            raise DataError(f"{where}: field {name!r} must be text, got {got}")
        parts.append(value.strip())
    question = " ".join(part for part in parts if part)
    if not question:
        raise DataError(f"{where}: field {field!r} is empty")
    return question


def _gold(row: dict[str, object], field: str, where: str) -> tuple[str, str]:
    """(normalised gold, the answer as written); a one-element list is its element (MAWPS)."""
    if field not in row:
        raise DataError(f"{where}: missing field {field!r} (fields: {_field_names(row)})")
    raw = row[field]
    if isinstance(raw, list):
        if len(raw) != 1:
            raise DataError(f"{where}: field {field!r} holds {len(raw)} answers; one is needed")
        raw = raw[0]
    try:
        return parse_gold(raw), str(raw)  # type: ignore[arg-type]  # parse_gold checks the type
    except ValueError as exc:
        raise DataError(f"{where}: field {field!r}: {exc}") from None


def _tolerance(row: dict[str, object], field: str, where: str) -> Tolerance | None:
    raw = row.get(field)
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            return Tolerance.parse(raw)
        return Tolerance.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            error = exc.errors()[0]
            reason = f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}"
        else:
            reason = str(exc)
        raise DataError(f"{where}: field {field!r}: {reason}") from None


def _rows(path: Path) -> Iterator[tuple[int, str, dict[str, object]]]:
    """(line number, "file:line", object) for each non-blank line, failing with the file, line and reason."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{where}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8"
                ) from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            except ValueError as exc:  # e.g. an integer past Python's 4,300-digit conversion limit
                raise DataError(f"{where}: not readable JSON ({preview(str(exc), 80)})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield lineno, where, row


def load_jsonl(
    path: str | os.PathLike[str],
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    id_prefix: str | None = None,
    id_field: str = "id",
    tolerance_field: str = "tolerance",
) -> list[Problem]:
    """Problems from a JSONL file, one JSON object a line.

    `question_field` names the question's field, or several joined by "+" ("Body+Question"
    for SVAMP), whose texts are joined with a space; it must hold text. `answer_field` may
    hold a number, a one-number list (MAWPS), or text: a bare number or fraction, "9 (apples)"
    (ASDiv), or a solution ending in `#### N` (GSM8K). `id_field` is used where present,
    else "<prefix>-<line>". A row's `tolerance_field`, where present, sets how its answers
    are judged (`reasoner.numbers.Tolerance`: an object or "rel=1e-6,places=3"). Anything
    else is refused in one line naming the file, line and field.
    """
    path = Path(path)
    prefix = id_prefix if id_prefix is not None else path.stem
    problems = []
    for lineno, where, row in _rows(path):
        question = _question(row, question_field, where)
        gold, answer = _gold(row, answer_field, where)
        raw_id = row.get(id_field)
        if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
            raise DataError(f"{where}: field {id_field!r} must be text or an integer, got {preview(raw_id, 40)}")
        problems.append(
            Problem(
                id=str(raw_id) if raw_id is not None else f"{prefix}-{lineno}",
                question=question,
                gold=gold,
                answer_field=answer,
                tolerance=_tolerance(row, tolerance_field, where),
            )
        )
    return problems


def load_gsm8k(split: Split = "test", data: str | os.PathLike[str] | None = None) -> list[Problem]:
    return load_jsonl(gsm8k_path(split, data), id_prefix=f"gsm8k-{split}")
