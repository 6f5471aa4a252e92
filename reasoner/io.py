"""Writing files and printing so that a crash leaves whole files and no secret gets out.

Every file the project writes goes through `write_atomic` (whole files) or `json_line` (one line
appended to a JSONL file), and every console it prints on can wrap its stream in
`ScrubbedStream`: these are the choke points where `reasoner.secrets.scrub` runs, so a call site
cannot forget it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import IO, Any, Literal

from reasoner.secrets import scrub, scrub_obj

__all__ = ["ScrubbedStream", "fsync_dir", "json_line", "write_atomic", "write_json_atomic", "write_jsonl_atomic"]


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` survive a power cut."""
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (scrubbed of secrets): readers see the old file or the new, never half.

    The data is fsync'ed before the rename and the folder after it, so a power cut cannot leave
    an empty file under the old name.
    """
    _replace(path, lambda f: f.write(scrub(text).encode()))


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(scrub_obj(data), indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[Any]) -> None:
    """Replace `path` with one `json_line` per row, streamed (a traces file can be large)."""

    def write(f: IO[bytes]) -> None:
        for row in rows:
            f.write(json_line(row))

    _replace(path, write)


def _replace(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a full disk must not also leave a stray .tmp behind
        raise
    fsync_dir(path.parent)


def json_line(data: Any) -> bytes:
    """One JSONL line (scrubbed of secrets), newline included, ready for a single write."""
    return json.dumps(scrub_obj(data), ensure_ascii=False).encode() + b"\n"


class ScrubbedStream:
    """A text stream that scrubs secrets from everything written to it.

    Named by `which` rather than holding `sys.stdout` itself, so a stream swapped in later (a
    test's capture, a pager) is the one written to. Everything else (isatty, fileno, encoding)
    is the underlying stream's, so rich still sees a terminal where there is one.
    """

    def __init__(self, which: Literal["stdout", "stderr"]) -> None:
        self._which = which

    @property
    def stream(self) -> Any:
        stream = getattr(sys, self._which)
        # While rich shows a live display it swaps in a proxy that prints through the console;
        # writing to the proxy from that console would loop, so write where the proxy writes.
        return getattr(stream, "rich_proxied_file", stream)

    def write(self, text: str) -> int:
        self.stream.write(scrub(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        if name == "rich_proxied_file":
            raise AttributeError(name)  # rich must keep writing here, through the scrub
        return getattr(self.stream, name)
