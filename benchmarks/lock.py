"""One run at a time per run folder: two runs appending to one results.jsonl would interleave.

The lock is an advisory `flock` on OUT/run.lock, which the kernel drops when its holder dies
however it dies (SIGKILL included), so a stale lock from a dead process is simply taken over.
The file also says who holds it (pid, host, start time) for the message a second run gives.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reasoner.bench.questions import BenchError

LOCK_NAME = "run.lock"


def prepare_folder(out: Path) -> bool:
    """Create the run folder if needed; True if this call created it. One-line errors, no traceback."""
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder; choose a folder for the run")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create the run folder {out}: {exc.strerror or exc}") from None
    return created


class RunLock:
    """Hold the run folder's lock for the life of a run (a context manager)."""

    def __init__(self, out: Path, remove_folder_if_empty: bool = False) -> None:
        self.path = out / LOCK_NAME
        self.remove_folder_if_empty = remove_folder_if_empty
        self.previous: dict[str, Any] | None = None  # what a dead holder left, when we took over
        self.unsupported: str | None = None  # why the folder could not be locked, where it could not
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise BenchError(f"cannot write in the run folder {self.path.parent}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise BenchError(f"{self.path.parent} is in use by another run ({_describe(holder)}); "
                                 "wait for it to end, or choose another --out") from None
            except OSError as exc:  # a filesystem without locks (some network or FUSE mounts)
                os.close(fd)
                self.unsupported = f"the run folder cannot be locked ({exc.strerror or exc}): do not start a second run on it"
                return self
            # The holder before us may have removed the file between our open and our lock: then
            # what we hold is a lock on nothing, and we start over on the new file.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        self.previous = _read(fd) or None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        except OSError as exc:  # a full disk, say: nothing of the run is written yet
            self.__exit__()
            raise BenchError(f"cannot write in the run folder {self.path.parent}: {exc.strerror or exc}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None or self.unsupported:
            # Unlink while still holding the lock, so no one can lock the old file after we let go.
            with contextlib.suppress(OSError):
                self.path.unlink()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.remove_folder_if_empty:
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # only succeeds if nothing was written


def _read(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        value = json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "its details are not written yet"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"


def describe_stale(previous: dict[str, Any] | None) -> str | None:
    """A note when a dead run's lock was taken over."""
    if not previous:
        return None
    return f"took over the lock of an earlier run that ended without releasing it ({_describe(previous)})"
