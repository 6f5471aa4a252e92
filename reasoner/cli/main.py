"""The `reasoner` command: solve a question, list strategies, run the GSM8K benchmark."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from reasoner.bench.gsm8k import EXIT_CODES, BenchConfig, BenchError, StorageError, errors_line, run_gsm8k
from reasoner.bench.report import RULES, RunDirError, results_table, write_report
from reasoner.backends.base import BackendError
from reasoner.backends.spec import SPEC_HELP, open_backend
from reasoner.data import DataError
from reasoner.io import ScrubbedStream
from reasoner.strategy import Strategy, available, get_strategy
from reasoner.trace import render_tree
from reasoner.types import Solution

# Everything printed passes the secrets scrub (a server may echo a key back).
console = Console(file=ScrubbedStream("stdout"))
err_console = Console(file=ScrubbedStream("stderr"))

# Options every strategy has, shown once under the common group rather than per strategy.
COMMON = set(Strategy.model_fields)


def add_strategy_options(
    parser: argparse.ArgumentParser, strategies: dict[str, type[Strategy]], skip: frozenset[str] = frozenset()
) -> None:
    """One flag per strategy option (`samples` → `--samples`), made from the strategies' fields.

    Values stay strings here; pydantic converts and validates them for the chosen strategy, so
    a bad value is reported with the option's name.
    """
    owners: dict[str, list[tuple[str, Any]]] = {}
    for sname, cls in sorted(strategies.items()):
        for field, info in cls.model_fields.items():
            owners.setdefault(field, []).append((sname, info))
    group = parser.add_argument_group("strategy options")
    for field, users in owners.items():
        if field in skip:
            continue
        flag = "--" + field.replace("_", "-")
        descriptions = {info.description or field for _, info in users}
        if field in COMMON:
            help_text = f"{users[0][1].description or field} [all strategies]"
        elif len(descriptions) == 1:
            help_text = f"{descriptions.pop()} [{', '.join(n for n, _ in users)}]"
        else:  # the same name means different things to different strategies: say each
            help_text = "; ".join(f"{n}: {info.description or field}" for n, info in users)
        annotations = [info.annotation for _, info in users]
        if all(a is bool for a in annotations):
            group.add_argument(flag, dest=f"opt_{field}", action="store_const", const="true", help=help_text)
            continue
        choices = None
        if all(typing.get_origin(a) is typing.Literal for a in annotations):
            choices = sorted({str(c) for a in annotations for c in typing.get_args(a)})
        group.add_argument(flag, dest=f"opt_{field}", metavar=field.upper(), choices=choices, help=help_text)


def _flags(fields: list[str]) -> str:
    return ", ".join("--" + k.replace("_", "-") for k in fields)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy flags given on the command line, by field name."""
    return {k.removeprefix("opt_"): v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}


def chosen_options(args: argparse.Namespace, strategy: str, strategies: dict[str, type[Strategy]]) -> dict[str, Any]:
    options = given_options(args)
    cls = strategies[strategy]
    foreign = sorted(k for k in options if k not in cls.model_fields)
    if foreign:
        raise SystemExit(f"error: {_flags(foreign)} does not apply to strategy {strategy!r}")
    return options


def options_by_strategy(args: argparse.Namespace, names: list[str], strategies: dict[str, type[Strategy]]) -> dict[str, dict[str, Any]]:
    """Each chosen strategy's options: a flag goes to every strategy that has the option, and a
    flag that none of them has is an error."""
    given = given_options(args)
    unused = sorted(k for k in given if not any(k in strategies[n].model_fields for n in names))
    if unused:
        raise SystemExit(f"error: {_flags(unused)} does not apply to any chosen strategy ({', '.join(names)})")
    return {n: {k: v for k, v in given.items() if k in strategies[n].model_fields} for n in names}


def _bad_options(name: str, exc: ValidationError) -> str:
    problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
    return f"bad option for {name}: {problems}"


def _engine_arg(text: str) -> tuple[str, Any]:
    """`key=value` for vLLM's engine; the value is read as JSON where it parses (4096, true, [1, 2])."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip().removeprefix("--").replace("-", "_"), parsed


def add_vllm_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vllm-arg", action="append", type=_engine_arg, default=[], metavar="KEY=VALUE",
                        help="a vLLM engine argument for a vllm: model, e.g. max_model_len=4096 (repeatable)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser(strategies: dict[str, type[Strategy]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasoner", description="Make a language model reason better by orchestrating it.")
    sub = parser.add_subparsers(dest="command", required=True)

    solve = sub.add_parser("solve", help="answer one question with a strategy")
    solve.add_argument("question")
    solve.add_argument("--strategy", "-s", default="few-shot-cot", choices=sorted(strategies))
    solve.add_argument("--model", "-m", default="local", help=SPEC_HELP)
    solve.add_argument("--model-name", help="model name for an HTTP server (default: the one it lists)")
    add_vllm_arg(solve)
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of the panel")
    solve.add_argument("--trace", action="store_true", help="show the graph of calls that ran")
    add_strategy_options(solve, strategies)

    sub.add_parser("strategies", help="list the strategies")

    chat = sub.add_parser("chat", help="a conversation in the terminal, reasoning and tool use shown as they happen")
    chat.add_argument("--model", "-m", default="local", help=SPEC_HELP)
    chat.add_argument("--model-name", help="model name for an HTTP server")
    add_vllm_arg(chat)
    chat.add_argument("--strategy", "-s", default="react" if "react" in strategies else "few-shot-cot")
    chat.add_argument("--tools", default="calculator,python", help="comma-separated: calculator, python, search")
    chat.add_argument("--docs", help="a folder of text/Markdown files for the search tool")
    add_strategy_options(chat, strategies, skip=frozenset({"tools", "docs"}))  # the chat's own flags

    bench = sub.add_parser(
        "bench",
        help="run strategies on a benchmark and report accuracy and cost",
        description="Run one or more strategies on the same GSM8K questions, appending each result to "
        "OUT/results.jsonl as it finishes; then write OUT/summary.json and OUT/report.md.",
        epilog=EXIT_CODES,
    )
    bench.add_argument("task", choices=["gsm8k"], help="the benchmark")
    bench.add_argument("--strategy", "-s", action="append", required=True, choices=sorted(strategies),
                       help="a strategy to run (repeat for several; options below apply to each that has them)")
    bench.add_argument("--model", "-m", default="local", help=SPEC_HELP)
    bench.add_argument("--model-name", help="model name for an HTTP server (default: the one it lists)")
    add_vllm_arg(bench)
    pick = bench.add_mutually_exclusive_group()
    pick.add_argument("--limit", type=_positive, metavar="N", help="the first N questions")
    pick.add_argument("--sample", type=_positive, metavar="N", help="N questions drawn at random, seeded by --seed (default 0)")
    bench.add_argument("--split", choices=["test", "train"], default="test")
    bench.add_argument("--data", metavar="PATH",
                       help="a GSM8K folder or any JSONL file (default: $REASONER_GSM8K, else a cached download)")
    bench.add_argument("--question-field", default="question", metavar="F", help="JSONL field holding the question")
    bench.add_argument("--answer-field", default="answer", metavar="F",
                       help="JSONL field holding the answer: a number or GSM8K-style text ending in '#### N'")
    bench.add_argument("--name", help="what the report calls the data (default: GSM8K, or the --data file's name)")
    bench.add_argument("--concurrency", "-c", type=_positive, default=8, help="questions in flight at once (default 8)")
    bench.add_argument("--out", "-o", metavar="DIR", help="run folder (default: runs/<timestamp>)")
    bench.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished questions")
    bench.add_argument("--retry-errors", action="store_true",
                       help="with --resume: run the questions that ended in an error again (their records move to errors.jsonl)")
    bench.add_argument("--scoring", choices=list(RULES), default="ours",
                       help="answer check: ours, or lm-evaluation-harness's exact match: strict (the gsm8k task's "
                       "'#### N'), cot-strict (the gsm8k_cot tasks' 'The answer is N.') or flexible (the last number)")
    add_strategy_options(bench, strategies)

    report = sub.add_parser("report", help="write and show the report of a benchmark run folder")
    report.add_argument("dir", help="the run folder (holding run.json and results.jsonl)")
    report.add_argument("--scoring", choices=list(RULES), help="rescore with this rule (default: the run's)")
    return parser


async def run_solve(args: argparse.Namespace, strategy: Strategy) -> Solution:
    backend = await open_backend(args.model, model_name=args.model_name, engine_args=dict(args.vllm_arg))
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


def run_bench(args: argparse.Namespace, strategies: dict[str, type[Strategy]], argv: list[str]) -> int:
    names = list(dict.fromkeys(args.strategy))
    built: dict[str, Strategy] = {}
    for name, options in options_by_strategy(args, names, strategies).items():
        try:
            built[name] = get_strategy(name, **options)
        except ValidationError as exc:
            err_console.print(f"[red]error:[/red] {_bad_options(name, exc)}")
            return 2
    if args.resume and not args.out:
        err_console.print("[red]error:[/red] --resume needs --out DIR, the run folder to continue")
        return 2
    if args.retry_errors and not args.resume:
        err_console.print("[red]error:[/red] --retry-errors goes with --resume: it retries the failed questions of a run")
        return 2
    out = Path(args.out) if args.out else default_out()
    config = BenchConfig(
        strategies=built,
        out=out,
        model=args.model,
        model_name=args.model_name,
        split=args.split,
        data=args.data,
        question_field=args.question_field,
        answer_field=args.answer_field,
        name=args.name,
        limit=args.limit,
        sample=args.sample,
        seed=next(iter(built.values())).seed,  # --seed also picks the --sample
        concurrency=args.concurrency,
        resume=args.resume,
        retry_errors=args.retry_errors,
        scoring=args.scoring,
        # The runner opens the model only after checking the data and a resumed run's settings.
        backend_options={"engine_args": dict(args.vllm_arg)} if args.vllm_arg else {},
    )
    try:
        result = asyncio.run(run_gsm8k(config, console=console))
    except (DataError, BackendError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    except (BenchError, RunDirError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except StorageError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
    except RunDirError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    print_report(report.summary, report.notes, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    strategies = available()
    parser = build_parser(strategies)
    args = parser.parse_args(argv)
    if getattr(args, "vllm_arg", None) and not args.model.startswith("vllm:"):
        parser.error("--vllm-arg applies only to a vllm: model")

    if args.command == "chat":
        from reasoner.cli.chat import main as chat_main

        return chat_main(args)

    if args.command == "chat":
        from reasoner.cli.chat import main as chat_main

        return chat_main(args)

    if args.command == "strategies":
        table = Table(title="strategies", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("what it does")
        for name, cls in sorted(strategies.items()):
            table.add_row(name, cls.summary)
        console.print(table)
        return 0

    if args.command == "bench":
        return run_bench(args, strategies, sys.argv[1:] if argv is None else argv)
    if args.command == "report":
        return run_report(args)

    try:
        strategy = get_strategy(args.strategy, **chosen_options(args, args.strategy, strategies))
    except ValidationError as exc:
        err_console.print(f"[red]error:[/red] {_bad_options(args.strategy, exc)}")
        return 2
    try:
        solution = asyncio.run(run_solve(args, strategy))
    except BackendError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
