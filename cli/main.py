"""The `reasoner` command: solve a question, list strategies, run the GSM8K benchmark."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import typing
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from reasoner.backends.base import BackendError
from reasoner.backends.spec import SPEC_HELP, open_backend
from reasoner.strategy import Strategy, available, get_strategy
from reasoner.trace import render_tree
from reasoner.types import Solution

console = Console()
err_console = Console(stderr=True)

# Options every strategy has, shown once under the common group rather than per strategy.
COMMON = set(Strategy.model_fields)


def add_strategy_options(parser: argparse.ArgumentParser, strategies: dict[str, type[Strategy]]) -> None:
    """One flag per strategy option (`samples` → `--samples`), made from the strategies' fields.

    Values stay strings here; pydantic converts and validates them for the chosen strategy, so
    a bad value is reported with the option's name.
    """
    seen: dict[str, str] = {}
    group = parser.add_argument_group("strategy options")
    for sname, cls in sorted(strategies.items()):
        for field, info in cls.model_fields.items():
            if field in seen:
                continue
            seen[field] = sname
            flag = "--" + field.replace("_", "-")
            owner = "all strategies" if field in COMMON else ", ".join(
                n for n, c in sorted(strategies.items()) if field in c.model_fields
            )
            help_text = f"{info.description or field} [{owner}]"
            if info.annotation is bool:
                group.add_argument(flag, dest=f"opt_{field}", action="store_const", const="true", help=help_text)
            else:
                choices = list(typing.get_args(info.annotation)) if typing.get_origin(info.annotation) is typing.Literal else None
                group.add_argument(flag, dest=f"opt_{field}", metavar=field.upper(), choices=choices, help=help_text)


def chosen_options(args: argparse.Namespace, strategy: str, strategies: dict[str, type[Strategy]]) -> dict[str, Any]:
    options = {k.removeprefix("opt_"): v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    cls = strategies[strategy]
    foreign = sorted(k for k in options if k not in cls.model_fields)
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise SystemExit(f"error: {flags} does not apply to strategy {strategy!r}")
    return options


def build_parser(strategies: dict[str, type[Strategy]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasoner", description="Make a language model reason better by orchestrating it.")
    sub = parser.add_subparsers(dest="command", required=True)

    solve = sub.add_parser("solve", help="answer one question with a strategy")
    solve.add_argument("question")
    solve.add_argument("--strategy", "-s", default="few-shot-cot", choices=sorted(strategies))
    solve.add_argument("--model", "-m", default="local", help=SPEC_HELP)
    solve.add_argument("--model-name", help="model name for an HTTP server (default: the one it lists)")
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of the panel")
    solve.add_argument("--trace", action="store_true", help="show the graph of calls that ran")
    add_strategy_options(solve, strategies)

    sub.add_parser("strategies", help="list the strategies")
    return parser


async def run_solve(args: argparse.Namespace, strategy: Strategy) -> Solution:
    backend = await open_backend(args.model, model_name=args.model_name)
    try:
        return await strategy.solve(args.question, backend)
    finally:
        await backend.aclose()


def print_solution(solution: Solution, show_trace: bool) -> None:
    answer = escape(solution.answer) if solution.answer is not None else "(no answer)"
    body = f"[bold]{answer}[/bold]\n\n[dim]{escape(solution.text.strip()[-1500:])}[/dim]"
    style = "red" if solution.error else ("green" if solution.answer is not None else "yellow")
    console.print(Panel(body, title=f"{solution.strategy}", border_style=style, expand=False))
    if solution.error:
        err_console.print(f"[red]error:[/red] {solution.error}")
    u = solution.usage
    console.print(
        f"[dim]{u.calls} calls · {u.prompt_tokens} prompt + {u.completion_tokens} completion tokens · {u.latency_s:.1f} s[/dim]"
    )
    if solution.details:
        console.print_json(json.dumps({k: v for k, v in solution.details.items() if k not in ("reasoning",)}, default=str))
    if show_trace:
        console.print(render_tree(solution.trace, title="calls"))


def main(argv: list[str] | None = None) -> int:
    strategies = available()
    parser = build_parser(strategies)
    args = parser.parse_args(argv)

    if args.command == "strategies":
        table = Table(title="strategies", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("what it does")
        for name, cls in sorted(strategies.items()):
            table.add_row(name, cls.summary)
        console.print(table)
        return 0

    try:
        strategy = get_strategy(args.strategy, **chosen_options(args, args.strategy, strategies))
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        err_console.print(f"[red]error:[/red] bad option for {args.strategy}: {problems}")
        return 2
    try:
        solution = asyncio.run(run_solve(args, strategy))
    except BackendError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        return 130
    if args.json:
        out = {"answer": solution.answer, **solution.model_dump(mode="json", exclude={"answer"})}
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        print_solution(solution, args.trace)
    return 1 if solution.error else 0


if __name__ == "__main__":
    raise SystemExit(main())
