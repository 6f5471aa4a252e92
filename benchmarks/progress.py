"""What a run shows while it runs: a live table per strategy on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from reasoner.bench.record import Record

PLAIN_EVERY_S = 10.0
NO_DATA = "—"  # shown for a rate or an ETA until this session has finished a question


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 's'}"


@dataclass
class Tally:
    total: int
    done: int = 0
    correct: int = 0
    errors: int = 0
    completion_tokens: int = 0  # this session's, for the rate
    done_now: int = 0  # this session's

    def add(self, record: Record, now: bool) -> None:
        self.done += 1
        self.correct += record.correct
        self.errors += record.error is not None
        if now:
            self.done_now += 1
            self.completion_tokens += record.completion_tokens

    def accuracy(self) -> str:
        return f"{100 * self.correct / self.done:5.1f}%" if self.done else "    –"

    def rate(self, elapsed: float) -> str:
        if not self.done_now:
            return NO_DATA
        return f"{self.completion_tokens / max(elapsed, 1e-9):.1f} tok/s"

    def eta(self, elapsed: float) -> str:
        """Time left at this session's average pace so far.

        The average over the whole session, not a recent window: while a backend retries and
        nothing finishes, the pace drops and the estimate grows, instead of freezing at what it
        was before the stall.
        """
        if self.done >= self.total:
            return "done"
        if not self.done_now:
            return NO_DATA
        seconds = round((self.total - self.done) * elapsed / self.done_now)
        hours, rest = divmod(seconds, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class _TallyColumn(ProgressColumn):
    """A column computed from the strategy's tally each time the display refreshes."""

    def __init__(self, view: ProgressView, kind: str) -> None:
        super().__init__()
        self.view, self.kind = view, kind

    def render(self, task: Task) -> Text:
        t = self.view.tallies[task.description]
        elapsed = self.view.elapsed()
        if self.kind == "acc":
            return Text(f"acc {t.accuracy()}")
        if self.kind == "err":
            return Text(f"{t.errors} err", style="red" if t.errors else "")
        if self.kind == "tps":
            return Text(f"{t.rate(elapsed):>12}")
        eta = t.eta(elapsed)
        return Text(f"{eta:>12}" if eta == "done" else f"ETA {eta:>8}")


class ProgressView:
    """A live table per strategy on a terminal; a plain line now and then otherwise (logs, pipes)."""

    def __init__(self, console: Console, tallies: dict[str, Tally]) -> None:
        self.console = console
        self.tallies = tallies
        self.started = time.monotonic()
        self.last_plain = self.started
        self.live = console.is_terminal and not console.is_dumb_terminal
        self.progress: Progress | None = None
        self.tasks: dict[str, Any] = {}
        # Strategies whose last line ("done") is printed, so no later line repeats it.
        self.announced = {label for label, t in tallies.items() if t.done >= t.total}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> ProgressView:
        if self.live:
            width = max(len(label) for label in self.tallies)
            self.progress = Progress(
                # Not markup: a label is the user's text, and "[x]" in it must show as written.
                TextColumn(f"{{task.description:<{width}}}", style="bold", markup=False),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                *(_TallyColumn(self, kind) for kind in ("acc", "err", "tps", "eta")),
                console=self.console,
                refresh_per_second=4,
            )
            for label, t in self.tallies.items():
                self.tasks[label] = self.progress.add_task(label, total=t.total, completed=t.done)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, record: Record) -> None:
        label = record.strategy
        t = self.tallies[label]
        t.add(record, now=True)
        if self.progress is not None:
            self.progress.update(self.tasks[label], advance=1)
            return
        now = time.monotonic()
        if t.done >= t.total and label not in self.announced:
            self.print_plain(label)
        elif now - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = now
            self.print_plain(*(name for name in self.tallies if name not in self.announced))

    def print_plain(self, *labels: str) -> None:
        elapsed = self.elapsed()
        for label in labels:
            t = self.tallies[label]
            eta = t.eta(elapsed)
            if eta == "done":
                self.announced.add(label)
            self.console.print(
                f"{label}: {t.done}/{t.total} · acc {t.accuracy().strip()} · {plural(t.errors, 'error')} · "
                f"{t.rate(elapsed)} · {eta if eta == 'done' else 'ETA ' + eta}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
