"""`reasoner solve`: one question, one strategy, the answer in a panel (or one JSON object)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from rich.markup import escape
from rich.panel import Panel

from reasoner.backends.spec import open_backend
from reasoner.cli.console import console, err_console
from reasoner.secrets import scrub, scrub_obj
from reasoner.strategy import Strategy
from reasoner.trace import render_tree
from reasoner.types import Solution, Usage

# The panel shows the end of the reasoning, where the answer is argued; --json has all of it.
SHOWN_CHARS = 1500
_BOUNDARY = re.compile(r"\n+|(?<=[.!?])\s+")


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def tail(text: str, limit: int = SHOWN_CHARS) -> str:
    """The last `limit` characters of `text`, starting at a line or sentence boundary, with a
    note of what was left out before them."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    window = text[cut:]
    # The first boundary in the opening third, so a sentence is not shown from its middle; a text
    # without one is cut at a space, at worst mid-word.
    found = _BOUNDARY.search(window, 0, limit // 3) or re.compile(r"\s+").search(window, 0, limit // 3)
    start = found.end() if found else 0
    return f"… ({cut + start:,} earlier characters not shown; --json prints all)\n" + window[start:]


def usage_line(u: Usage) -> str:
    thinking = f" (of which {u.reasoning_tokens} thinking)" if u.reasoning_tokens else ""
    return (f"{plural(u.calls, 'call')} · {u.prompt_tokens} prompt + {u.completion_tokens} completion tokens{thinking} · "
            f"{u.latency_s:.1f} s")


async def run_solve(args: argparse.Namespace, strategy: Strategy, options: dict[str, Any]) -> Solution:
    backend = await open_backend(args.model, model_name=args.model_name, **options)
    try:
        return await strategy.solve(args.question, backend)
    finally:
        await backend.aclose()


def print_json(solution: Solution) -> None:
    out = {"answer": solution.answer, **solution.model_dump(mode="json", exclude={"answer"})}
    # json.dumps escapes control characters, so only secrets need removing here.
    sys.stdout.write(json.dumps(scrub_obj(out)) + "\n")


def print_solution(solution: Solution, show_trace: bool) -> None:
    answer = escape(solution.answer) if solution.answer is not None else "(no answer)"
    body = f"[bold]{answer}[/bold]\n\n[dim]{escape(tail(solution.text))}[/dim]"
    style = "red" if solution.error else ("green" if solution.answer is not None else "yellow")
    console.print(Panel(body, title=f"{solution.strategy}", border_style=style, expand=False))
    if solution.error:
        err_console.print(f"[red]error:[/red] {escape(solution.error)}")
    console.print(f"[dim]{usage_line(solution.usage)}[/dim]")
    details = {k: v for k, v in solution.details.items() if k not in ("reasoning",)}
    if details:
        console.print(f"[bold]details[/bold] [dim](what {escape(solution.strategy)} reports about its run)[/dim]")
        console.print_json(scrub(json.dumps(details, default=str)))
    if show_trace:
        console.print(render_tree(solution.trace, title="calls"))
