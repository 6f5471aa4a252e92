"""A sample bank: every sample a backend returns, recorded on disk and replayed by its index.

    bank = SampleBank(backend, "runs/sc.bank")                   # use and record
    bank = SampleBank(backend, "runs/sc.bank", mode="replay")    # a missing sample is an error
    bank = SampleBank(backend, "runs/sc.bank", mode="refresh")   # ask again, overwrite

A sample is keyed by the request without `n` and `seed` (model, prompt or messages, every other
parameter) and by its **sample index**: choice i of a request with seed s is sample s + i (the
convention the engine and the HTTP backend already follow when they split `n`), so the 5th
sample of a prompt is always the same recorded sample and the 6th is new. A request without a
seed takes the next indexes not yet handed out for its key in this bank's lifetime, so repeated
unseeded calls get distinct samples, and the next run replays them in the same order.

A request for n samples takes the recorded ones and asks the backend only for the rest: one
request per gap of missing indexes (usually one, for the tail), with `n` the gap's size and the
seed of its first index.

On disk: one SQLite file, WAL journal, each new sample committed as it arrives (a killed run
leaves a bank that opens and replays everything recorded before the kill); sample payloads are
zlib-compressed JSON. One connection behind a lock serves every task and thread of the process.
Recorded text passes through `reasoner.secrets.scrub` before it is written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel

from reasoner import secrets
from reasoner.backends.base import Backend, Delegating
from reasoner.backends.errors import BackendError
from reasoner.types import Choice, Completion, GenerationRequest

__all__ = ["BANK_MODES", "BankError", "BankMiss", "BankMode", "BankUsage", "SampleBank", "recorded", "request_key"]

BankMode = Literal["record", "replay", "refresh"]
BANK_MODES: tuple[str, ...] = get_args(BankMode)
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (key TEXT PRIMARY KEY, request BLOB NOT NULL, prompt_tokens INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    key TEXT NOT NULL, idx INTEGER NOT NULL, choice BLOB NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (key, idx)
) WITHOUT ROWID;
"""


class BankError(Exception):
    """A bank file that cannot be opened or used (not a bank, a newer schema, a bad mode)."""


class BankMiss(BackendError):
    """Replay-only mode met a sample the bank does not hold; the message names the request and indexes."""


class BankUsage(BaseModel):
    """What a bank served from disk and what it had to ask the model for."""

    #: Requests answered wholly from the bank, and those that needed the model (for some samples).
    recorded_calls: int = 0
    new_calls: int = 0  # requests sent to the model
    recorded_samples: int = 0
    new_samples: int = 0
    #: Tokens of the replayed samples (what they cost when they were made) and of the new requests.
    recorded_tokens: int = 0
    new_prompt_tokens: int = 0
    new_completion_tokens: int = 0

    @property
    def new_tokens(self) -> int:
        return self.new_prompt_tokens + self.new_completion_tokens

    def line(self) -> str:
        return (
            f"bank: {self.new_calls} new model calls ({self.new_samples} samples, {self.new_tokens:,} tokens); "
            f"{self.recorded_samples} recorded samples replayed ({self.recorded_tokens:,} tokens not paid again)"
        )


def request_key(model: str, request: GenerationRequest) -> tuple[str, str]:
    """(key, canonical JSON) of a request without `n` and `seed`, for backend model `model`."""
    data = {"model": model, **request.key_data(exclude={"n", "seed"})}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), text


def _pack(data: Any) -> bytes:
    return zlib.compress(json.dumps(secrets.scrub_obj(data), separators=(",", ":")).encode(), 6)


def _unpack(blob: bytes) -> Any:
    return json.loads(zlib.decompress(blob))


def _gaps(indexes: list[int]) -> list[list[int]]:
    """Runs of consecutive indexes: [3, 4, 7] -> [[3, 4], [7]]."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and runs[-1][-1] + 1 == i:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


class _Store:
    """The SQLite file: one connection, a lock around every statement, a commit per write."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no commit
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BankError(f"{path}: not a sample bank ({exc})") from None
        if row is None:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise BankError(f"{path}: bank schema {row[0]} is newer than this reasoner reads ({SCHEMA_VERSION})")
        self.lock = threading.Lock()

    def samples(self, key: str, indexes: list[int]) -> dict[int, dict[str, Any]]:
        marks = ",".join("?" * len(indexes))
        with self.lock:
            rows = self.db.execute(f"SELECT idx, choice FROM samples WHERE key=? AND idx IN ({marks})", (key, *indexes)).fetchall()
        return {idx: _unpack(blob) for idx, blob in rows}

    def prompt_tokens(self, key: str) -> int:
        with self.lock:
            row = self.db.execute("SELECT prompt_tokens FROM requests WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def put(self, key: str, request_json: str, prompt_tokens: int, choices: dict[int, dict[str, Any]], replace: bool) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        now = time.time()
        with self.lock:
            # One transaction per request: its samples land together or not at all.
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute(f"{verb} INTO requests VALUES (?, ?, ?)", (key, _pack(json.loads(request_json)), prompt_tokens))
                self.db.executemany(
                    f"{verb} INTO samples VALUES (?, ?, ?, ?)", [(key, i, _pack(c), now) for i, c in choices.items()]
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def counts(self) -> tuple[int, int]:
        with self.lock:
            requests = self.db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            samples = self.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        return int(requests), int(samples)

    def close(self) -> None:
        with self.lock:
            self.db.close()


def recorded(path: str | Path) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each request a bank file holds (model and parameters, without n and seed) with its samples
    in index order, read without changing the file (for curves and inspection)."""
    path = Path(path)
    if not path.is_file():
        raise BankError(f"{path}: no such bank file")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            requests = db.execute("SELECT key, request FROM requests ORDER BY key").fetchall()
            for key, blob in requests:
                rows = db.execute("SELECT choice FROM samples WHERE key=? ORDER BY idx", (key,)).fetchall()
                yield _unpack(blob), [_unpack(choice) for (choice,) in rows]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise BankError(f"{path}: not a sample bank ({exc})") from None


class SampleBank(Delegating):
    """`backend` behind a bank file at `path`. Settings (`describe`) are the backend's own, so a
    run's fingerprint does not change with the bank; `usage` says what was replayed and what was new."""

    supports_n = True  # type: ignore[assignment]  # it splits a request itself where the backend cannot sample n
    supports_streaming = False  # type: ignore[assignment]  # a completion comes whole, recorded or replayed

    def __init__(self, backend: Backend, path: str | Path, mode: BankMode = "record") -> None:
        if mode not in BANK_MODES:
            raise BankError(f"unknown bank mode {mode!r}; expected one of {', '.join(BANK_MODES)}")
        super().__init__(backend)
        self.path = Path(path)
        self.mode: BankMode = mode
        described = backend.describe()
        self.model = f"{described.get('backend', backend.name)}:{described.get('model') or ''}"
        self.store = _Store(self.path)
        self.usage = BankUsage()
        self._next_unseeded: dict[str, int] = {}

    def _indexes(self, key: str, request: GenerationRequest) -> list[int]:
        if request.seed is not None:
            return list(range(request.seed, request.seed + request.n))
        # Taken before any await, so concurrent unseeded requests never share an index.
        start = self._next_unseeded.get(key, 0)
        self._next_unseeded[key] = start + request.n
        return list(range(start, start + request.n))

    async def _generate(self, request: GenerationRequest) -> Completion:
        started = time.perf_counter()
        key, request_json = request_key(self.model, request)
        indexes = self._indexes(key, request)
        have = {} if self.mode == "refresh" else await asyncio.to_thread(self.store.samples, key, indexes)
        missing = [i for i in indexes if i not in have]
        if missing and self.mode == "replay":
            raise BankMiss(self._miss_message(request, key, missing))
        prompt_tokens = 0
        calls = 0
        new: dict[int, dict[str, Any]] = {}
        if missing:
            results = await asyncio.gather(*(self._ask(request, gap) for gap in self._requests_for(missing)))
            for gap_choices, completion in results:
                new.update(gap_choices)
                calls += completion.calls
                prompt_tokens = max(prompt_tokens, completion.prompt_tokens)
                self.usage.new_prompt_tokens += completion.prompt_tokens
                self.usage.new_completion_tokens += completion.completion_tokens
            await asyncio.to_thread(self.store.put, key, request_json, prompt_tokens, new, self.mode == "refresh")
            if self.mode != "refresh":  # two tasks racing for one index both return the one kept
                new = await asyncio.to_thread(self.store.samples, key, missing)
            self.usage.new_calls += 1
            self.usage.new_samples += len(missing)
        else:
            self.usage.recorded_calls += 1
            prompt_tokens = await asyncio.to_thread(self.store.prompt_tokens, key)
        choices = [Choice.model_validate(have.get(i) or new[i]) for i in indexes]
        replayed = [c for i, c in zip(indexes, choices) if i in have]
        self.usage.recorded_samples += len(replayed)
        self.usage.recorded_tokens += sum(c.completion_tokens or 0 for c in replayed) + (prompt_tokens if not missing else 0)
        return Completion(
            choices=choices,
            prompt_tokens=prompt_tokens,
            # What the samples cost when they were made, so replayed runs compare with live ones.
            completion_tokens=sum(c.completion_tokens or 0 for c in choices),
            latency_s=time.perf_counter() - started,
            calls=max(1, calls),
        )

    def _requests_for(self, missing: list[int]) -> list[list[int]]:
        gaps = _gaps(missing)
        if self.inner.supports_n:
            return gaps
        return [[i] for gap in gaps for i in gap]  # one request per sample, each with its own seed

    async def _ask(self, request: GenerationRequest, gap: list[int]) -> tuple[dict[int, dict[str, Any]], Completion]:
        ask = request.model_copy(update={"n": len(gap), "seed": gap[0] if request.seed is not None else None})
        completion = await self.inner.generate(ask)
        if len(completion.choices) < len(gap):
            raise BackendError(f"the backend returned {len(completion.choices)} choices for a request of n={len(gap)}")
        per_choice = completion.completion_tokens // max(1, len(completion.choices))
        out = {}
        for i, choice in zip(gap, completion.choices):
            data = choice.model_dump(mode="json")
            if data.get("completion_tokens") is None:
                data["completion_tokens"] = per_choice  # the request's total shared out, so replay can count it
            out[i] = data
        return out, completion

    def _miss_message(self, request: GenerationRequest, key: str, missing: list[int]) -> str:
        # The prompt's end: where a few-shot prompt names the question.
        text = secrets.scrub(request.as_text()).strip()
        shown = ("…" if len(text) > 80 else "") + text[-80:]
        which = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]}..{missing[-1]} ({len(missing)} samples)"
        return f"bank {self.path} (replay only) has no sample {which} of request {key[:12]} (prompt {shown!r})"

    def counts(self) -> tuple[int, int]:
        """(requests, samples) the bank file holds."""
        return self.store.counts()

    def close(self) -> None:
        """Close the bank file only, leaving the wrapped backend open (it may be the caller's)."""
        self.store.close()

    async def aclose(self) -> None:
        self.close()
        await self.inner.aclose()
