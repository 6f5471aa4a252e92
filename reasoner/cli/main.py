"""The `reasoner` command: solve a question, list strategies, chat, run and report the GSM8K benchmark."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from reasoner.backends.base import BackendError
from reasoner.bank import BankError
from reasoner.bench.gsm8k import BenchConfig, BenchError, StorageError, errors_line, run_gsm8k
from reasoner.bench.report import RunDirError, results_table, write_report
from reasoner.cli.console import console, err_console
from reasoner.cli.parser import (  # noqa: F401 - build_parser: the parser, for tests and tools
    Parser, UsageError, backend_options, bad_options, build_parser, chosen_options, options_by_strategy,
)
from reasoner.cli.solve import print_json, print_solution, run_solve
from reasoner.data import DataError, load_gsm8k, load_jsonl
from reasoner.strategy import Strategy, available, get_strategy
from reasoner.variants import VariantError, parse_variant


def print_error(exc: Exception) -> None:
    err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)


def default_out() -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / stamp
    n = 1
    while out.exists():
        n += 1
        out = Path("runs") / f"{stamp}-{n}"
    return out


def resume_command(argv: list[str], out: Path) -> str:
    """The command line that continues this run: the same arguments with --out DIR --resume."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--out", "-o"):
            skip = True
        elif not (arg.startswith("--out=") or arg in ("--resume", "--retry-errors")):
            kept.append(arg)
    return shlex.join(["reasoner", *kept, "--out", str(out), "--resume"])


def print_report(summary: dict[str, Any], notes: list[str], out: Path) -> None:
    if not console.is_terminal:
        console.width = max(console.width, 150)  # a log file or a pipe need not squeeze the table into 80 columns
    console.print(results_table(summary))
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    written = [p.name for p in (out / "summary.json", out / "report.md", out / "accuracy_vs_tokens.png") if p.exists()]
    console.print(f"[dim]{out}/: results.jsonl, traces.jsonl, run.json, {', '.join(written)}[/dim]", highlight=False, soft_wrap=True)


def build_variants(args: argparse.Namespace, strategies: dict[str, type[Strategy]]) -> dict[str, Strategy]:
    """Each -s as a labelled strategy: a plain name, or a variant `NAME:opt=v,...` (labelled as
    written) whose own options go over the shared option flags."""
    specs = list(dict.fromkeys(s.strip() for s in args.strategy))
    try:
        parsed = {spec: parse_variant(spec) for spec in specs}
    except VariantError as exc:
        raise UsageError(str(exc)) from None
    shared = options_by_strategy(args, list(dict.fromkeys(name for name, _ in parsed.values())), strategies)
    built: dict[str, Strategy] = {}
    for spec, (name, own) in parsed.items():
        try:
            built[spec] = get_strategy(name, **{**shared[name], **own})
        except ValidationError as exc:
            raise UsageError(bad_options(spec, exc)) from None
    return built


# The bench flags BenchConfig takes as they are, under their own names.
_BENCH_FLAGS = (
    "model", "model_name", "split", "data", "question_field", "answer_field", "id_field", "tolerance",
    "bank", "bank_mode", "name", "limit", "sample",
    "seed",  # the strategies' seed, and the draw of --sample
    "concurrency", "resume", "retry_errors", "scoring",
)


def run_bench(args: argparse.Namespace, strategies: dict[str, type[Strategy]], argv: list[str]) -> int:
    built = build_variants(args, strategies)
    if args.resume and not args.out:
        raise UsageError("--resume needs --out DIR, the run folder to continue")
    if args.retry_errors and not args.resume:
        raise UsageError("--retry-errors goes with --resume: it retries the failed questions of a run")
    # The runner opens the model only after checking the data and a resumed run's settings.
    model_options = backend_options(args, concurrency=args.concurrency)
    out = Path(args.out) if args.out else default_out()
    flags = {flag: getattr(args, flag) for flag in _BENCH_FLAGS}
    config = BenchConfig(strategies=built, out=out, backend_options=model_options, **flags)
    try:
        result = asyncio.run(run_gsm8k(config, console=console))
    except (DataError, BackendError) as exc:
        print_error(exc)
        return 1
    except (BenchError, RunDirError, BankError) as exc:
        print_error(exc)
        return 2
    except StorageError as exc:
        print_error(exc)
        err_console.print(f"  {resume_command(argv, out)}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:  # only where the runner could not install its own handler
        err_console.print("[yellow]interrupted[/yellow]; continue with:")
        err_console.print(f"  {resume_command(argv, out)}", markup=False, highlight=False, soft_wrap=True)
        return 130
    print_report(result.report.summary, result.notes, out)
    if result.interrupted:
        console.print(
            f"[yellow]interrupted:[/yellow] finished questions are saved in {out}/results.jsonl; continue with:",
            highlight=False,
        )
        # soft_wrap: the command must stay on one line to be copied.
        console.print(f"  {resume_command(argv, out)}", markup=False, highlight=False, soft_wrap=True)
        return 130
    errors = sum(f["errors"] for f in result.report.summary["strategies"].values())
    if errors:
        console.print("to run the questions that ended in an error again:", highlight=False)
        console.print(f"  {resume_command(argv, out)} --retry-errors", markup=False, highlight=False, soft_wrap=True)
        # Last, so a log's last line says why the exit status is 1.
        console.print(f"[red]{errors_line(errors)}[/red] (see {out}/results.jsonl); exit status 1", highlight=False)
        return 1
    return 0


def run_report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    try:
        report = write_report(out, scoring=args.scoring)
        page = None
        if args.html:
            from reasoner.bench.explorer import write_explorer

            page = write_explorer(out)
    except RunDirError as exc:
        print_error(exc)
        return 1
    print_report(report.summary, report.notes, out)
    if page is not None:
        console.print(f"results explorer: {page}", highlight=False, soft_wrap=True, markup=False)
    return 0


def run_curves(args: argparse.Namespace) -> int:
    from reasoner.bench.curves import write_bank_curve, write_curves

    source = Path(args.dir)
    try:
        if source.is_file():  # a bank: the golds come from the data
            data = Path(args.data) if args.data else None
            if data is not None and data.is_file():
                problems = load_jsonl(data, question_field=args.question_field, answer_field=args.answer_field)
            else:
                problems = load_gsm8k("test", data)
            out = Path(args.out) if args.out else source.with_name(source.name + ".curves")
            curves = write_bank_curve(source, problems, out, resamples=args.resamples, seed=args.seed)
        else:
            curves = write_curves(source, resamples=args.resamples, seed=args.seed)
    except (RunDirError, BankError, DataError) as exc:
        print_error(exc)
        return 1
    for label, points in curves.sc.items():
        table = Table(title=f"self-consistency at k: {label}")
        for column in ("k", "accuracy", "95% interval"):
            table.add_column(column, justify="right")
        for p in points:
            table.add_row(str(p.k), f"{100 * p.accuracy:.1f}%", f"{100 * p.low:.1f}–{100 * p.high:.1f}%")
        console.print(table)
    if curves.pareto:
        table = Table(title="accuracy against tokens per question")
        for column in ("strategy", "tokens", "accuracy", "frontier"):
            table.add_column(column, justify="left" if column == "strategy" else "right")
        for p in curves.pareto:
            table.add_row(escape(p.label), f"{p.tokens:,.0f}", f"{100 * p.accuracy:.1f}%", "yes" if p.frontier else "")
        console.print(table)
    for note in curves.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    console.print(f"[dim]{', '.join(str(f) for f in curves.files)}[/dim]", highlight=False, soft_wrap=True)
    return 0


def list_strategies(strategies: dict[str, type[Strategy]]) -> int:
    table = Table(title="strategies", show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("what it does")
    for name, cls in sorted(strategies.items()):
        table.add_row(name, cls.summary)
    console.print(table)
    return 0


def solve(args: argparse.Namespace, strategies: dict[str, type[Strategy]]) -> int:
    try:
        strategy = get_strategy(args.strategy, **chosen_options(args, args.strategy, strategies))
    except ValidationError as exc:
        raise UsageError(bad_options(args.strategy, exc)) from None
    options = backend_options(args)
    try:
        solution = asyncio.run(run_solve(args, strategy, options))
    except BackendError as exc:
        print_error(exc)
        return 1
    if args.json:
        print_json(solution)
    else:
        print_solution(solution, args.trace)
    if args.trace_html:
        from reasoner.bench.explorer import write_solution_page

        page = write_solution_page(solution, args.trace_html, model=args.model or "local")
        err_console.print(f"trace page: {page}", highlight=False, soft_wrap=True, markup=False)
    return 1 if solution.error else 0


def run(parser: Parser, args: argparse.Namespace, argv: list[str] | None, strategies: dict[str, type[Strategy]]) -> int:
    if args.command == "chat":
        from reasoner.cli.chat import main as chat_main

        return chat_main(args, backend_options(args))
    if args.command == "strategies":
        return list_strategies(strategies)
    if args.command == "bench":
        return run_bench(args, strategies, sys.argv[1:] if argv is None else argv)
    if args.command == "report":
        return run_report(args)
    if args.command == "curves":
        return run_curves(args)
    if args.command == "verifier":
        from reasoner.cli.verifier import run as train_verifier

        return train_verifier(args)
    if args.command == "serve":
        from reasoner.serve.command import run as serve

        return serve(args, backend_options(args), err_console)
    return solve(args, strategies)


def main(argv: list[str] | None = None) -> int:
    # From here on an interrupt is caught below (start-up used a handler that exits at once).
    from reasoner.cli import _interrupted_while_starting

    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        strategies = available()
        parser = build_parser(strategies)
        args = parser.parse_args(argv)
        try:
            return run(parser, args, argv, strategies)
        except UsageError as exc:
            try:
                parser.fail(args, str(exc))  # the usage and the message, as argparse's own errors
            except SystemExit as exit:
                return exit.code if isinstance(exit.code, int) else 2
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
