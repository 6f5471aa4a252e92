"""The `reasoner` command line: subcommands, the model flags they share, one flag per strategy option."""

from __future__ import annotations

import argparse
import json
import math
import typing
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticUndefined

from reasoner.backends.spec import SPEC_HELP
from reasoner.bank import BANK_MODES
from reasoner.bench.gsm8k import EXIT_CODES
from reasoner.bench.report import RULES
from reasoner.serve import command as serve_command
from reasoner.numbers import Tolerance
from reasoner.strategy import Strategy

# Options every strategy has, shown once under the common group rather than per strategy.
COMMON = set(Strategy.model_fields)
# Declared once for every command with its own meaning, not as a strategy option: one --seed drives
# every strategy of a run and the draw of bench --sample.
OWN_FLAGS = frozenset({"seed"})
DEFAULT_STRATEGY = "few-shot-cot"
# The bound that HTTP backends and the embedded model keep on requests in flight unless told.
BACKEND_IN_FLIGHT = 64
# Flags only the HTTP backend has; other backends refuse them with a usage error.
HTTP_ONLY = {"deadline": "deadline_s", "stall_timeout": "stall_timeout_s", "max_response_bytes": "max_response_bytes",
             "reasoning_controls": "reasoning_controls"}

EPILOG = """environment:
  REASONER_THREADS   CPU threads for the embedded llama.cpp model (default: the cores, at most 8)
  REASONER_GSM8K     a folder holding GSM8K's test.jsonl and train.jsonl (bench)
  OPENAI_API_KEY     the key for openai: and HTTP models; OPENAI_BASE_URL the server for openai:
  XDG_CACHE_HOME     where the chat keeps its line history: $XDG_CACHE_HOME/reasoner/chat_history
                     (default ~/.cache/reasoner/chat_history)"""


class UsageError(SystemExit):
    """A command line that cannot run; `main` reports it through argparse (exit 2). A SystemExit,
    so that a caller of these helpers that does not catch it still stops with the message."""


class Parser(argparse.ArgumentParser):
    """The top-level parser, which knows its subcommands so an error shows the right usage."""

    commands: dict[str, argparse.ArgumentParser]

    def fail(self, args: argparse.Namespace, message: str) -> typing.NoReturn:
        self.commands.get(getattr(args, "command", ""), self).error(message)


_positive = serve_command.whole(1)


def _seconds(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _tolerance(text: str) -> Tolerance:
    try:
        return Tolerance.parse(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise argparse.ArgumentTypeError(f"tolerance {text!r}: {first['loc'][0]}: {first['msg']}") from None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def _controls(text: str) -> tuple[str, ...]:
    controls = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [c for c in controls if c not in ("effort", "budget")]
    if unknown or not controls:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of effort, budget; got {text!r}")
    return controls


def model_flags() -> argparse.ArgumentParser:
    """The flags that choose and tune the model, shared by solve, chat and bench."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("model")
    group.add_argument("--model", "-m", default="local", help=SPEC_HELP + " (default: local)")
    group.add_argument("--model-name", help="model name for an HTTP server (default: the one it lists)")
    group.add_argument("--vllm-arg", action="append", type=_engine_arg, default=[], metavar="KEY=VALUE",
                       help="a vLLM engine argument for a vllm: model, e.g. max_model_len=4096 (repeatable)")
    group.add_argument("--max-in-flight", type=_positive, metavar="N",
                       help=f"most model requests the backend runs at once (default {BACKEND_IN_FLIGHT}; bench -c above "
                       "that raises it to -c). -c counts questions, this counts requests: a question may send several")
    group.add_argument("--deadline", type=_seconds, metavar="S",
                       help="HTTP models: give up on a request after S seconds, retries included")
    group.add_argument("--stall-timeout", type=_seconds, metavar="S",
                       help="HTTP models: retry a request that sends no byte for S seconds")
    group.add_argument("--max-response-bytes", type=_positive, metavar="N",
                       help="HTTP models: fail a response whose body is larger than N bytes")
    group.add_argument("--reasoning-controls", type=_controls, metavar="LIST",
                       help="HTTP models: the thinking-budget controls the server takes, e.g. effort,budget "
                       "(reasoning_effort; vLLM's thinking_token_budget); others are left out of requests")
    group.add_argument("--think-tags", choices=("inline", "opened"),
                       help="split <think>…</think> out of the model's text into its reasoning: inline (the model "
                       "writes both tags), opened (its chat template opens the block)")
    group.add_argument("--seed", type=int, metavar="N",
                       help="sampling seed for every strategy (and, for bench, the draw of --sample; default 0 there)")
    return parent


def backend_options(args: argparse.Namespace, concurrency: int | None = None) -> dict[str, Any]:
    """What `open_backend` gets from the model flags: only those the user set, so each backend
    keeps its own defaults. `concurrency` (bench -c) raises the in-flight bound with it."""
    options: dict[str, Any] = {}
    if args.vllm_arg:
        if not args.model.startswith("vllm:"):
            raise UsageError("--vllm-arg applies only to a vllm: model")
        options["engine_args"] = dict(args.vllm_arg)
    if args.max_in_flight is not None:
        options["max_in_flight"] = args.max_in_flight
    elif concurrency is not None and concurrency > BACKEND_IN_FLIGHT:
        options["max_in_flight"] = concurrency
    if args.think_tags is not None:
        options["think_tags"] = args.think_tags
    http = args.model.strip().startswith(("http://", "https://", "openai:"))
    for flag, keyword in HTTP_ONLY.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if not http:
            raise UsageError(f"--{flag.replace('_', '-')} applies only to HTTP models (http://…, openai:…), not {args.model!r}")
        options[keyword] = value
    return options


def _default_text(users: list[tuple[str, Any]]) -> str:
    """"; default 16", or each strategy's where they differ; nothing for options off by default."""
    defaults = {n: info.default for n, info in users if info.default is not PydanticUndefined and info.default is not None}
    shown = {n: v if isinstance(v, str) else json.dumps(v) for n, v in defaults.items()}
    if not shown:
        return ""
    if len(set(shown.values())) == 1 and len(shown) == len(users):
        return f"; default {next(iter(shown.values()))}"
    return "; default " + ", ".join(f"{v} ({n})" for n, v in sorted(shown.items()))


def add_strategy_options(
    parser: argparse.ArgumentParser, strategies: dict[str, type[Strategy]], skip: frozenset[str] = frozenset()
) -> None:
    """One flag per strategy option (`samples` → `--samples`), made from the strategies' fields.

    Values stay strings (numbers are checked to be finite); pydantic converts and validates them
    for the chosen strategy, so a bad value is reported with the option's name. A yes/no option
    has both forms (`--weighted` / `--no-weighted`).
    """
    owners: dict[str, list[tuple[str, Any]]] = {}
    for sname, cls in sorted(strategies.items()):
        for field, info in cls.model_fields.items():
            owners.setdefault(field, []).append((sname, info))
    group = parser.add_argument_group("strategy options")
    for field, users in owners.items():
        if field in skip or field in OWN_FLAGS:
            continue
        flag = "--" + field.replace("_", "-")
        descriptions = {info.description or field for _, info in users}
        if field in COMMON:
            help_text = f"{users[0][1].description or field} [all strategies]"
        elif len(descriptions) == 1:
            help_text = f"{descriptions.pop()} [{', '.join(n for n, _ in users)}]"
        else:  # the same name means different things to different strategies: say each
            help_text = "; ".join(f"{n}: {info.description or field}" for n, info in users)
        help_text = (help_text + _default_text(users)).replace("%", "%%")
        annotations = [info.annotation for _, info in users]
        if all(a is bool for a in annotations):
            group.add_argument(flag, dest=f"opt_{field}", action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        choices = None
        if all(typing.get_origin(a) is typing.Literal for a in annotations):
            choices = sorted({str(c) for a in annotations for c in typing.get_args(a)})
        kind = _finite if all(a in (float, float | None) for a in annotations) else None
        group.add_argument(flag, dest=f"opt_{field}", metavar=field.upper(), choices=choices, type=kind, help=help_text)


def _flags(fields: list[str]) -> str:
    return ", ".join("--" + k.replace("_", "-") for k in fields)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy flags given on the command line, by field name (and --seed, which every strategy has)."""
    given = {k.removeprefix("opt_"): v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    if getattr(args, "seed", None) is not None:
        given["seed"] = args.seed
    return given


def chosen_options(args: argparse.Namespace, strategy: str, strategies: dict[str, type[Strategy]]) -> dict[str, Any]:
    options = given_options(args)
    foreign = sorted(k for k in options if k not in strategies[strategy].model_fields)
    if foreign:
        raise UsageError(f"{_flags(foreign)} does not apply to strategy {strategy!r}")
    return options


def options_by_strategy(args: argparse.Namespace, names: list[str], strategies: dict[str, type[Strategy]]) -> dict[str, dict[str, Any]]:
    """Each chosen strategy's options: a flag goes to every strategy that has the option, and a
    flag that none of them has is an error."""
    given = given_options(args)
    unused = sorted(k for k in given if not any(k in strategies[n].model_fields for n in names))
    if unused:
        raise UsageError(f"{_flags(unused)} does not apply to any chosen strategy ({', '.join(names)})")
    return {n: {k: v for k, v in given.items() if k in strategies[n].model_fields} for n in names}


def bad_options(name: str, exc: ValidationError) -> str:
    problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
    return f"bad option for {name}: {problems}"


def build_parser(strategies: dict[str, type[Strategy]]) -> Parser:
    parser = Parser(prog="reasoner", description="Make a language model reason better by orchestrating it.",
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    model = model_flags()
    default = DEFAULT_STRATEGY if DEFAULT_STRATEGY in strategies else min(strategies, default="")

    solve = sub.add_parser("solve", parents=[model], help="answer one question with a strategy",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    solve.add_argument("question")
    solve.add_argument("--strategy", "-s", default=default, choices=sorted(strategies), metavar="NAME",
                       help=f"how to reason: {', '.join(sorted(strategies))} (default: {default}; "
                       "`reasoner strategies` says what each does)")
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of the panel")
    solve.add_argument("--trace", action="store_true", help="show the graph of calls that ran")
    solve.add_argument("--trace-html", metavar="PATH", help="also write the graph of calls as an offline HTML page (click a node for its prompt)")
    add_strategy_options(solve, strategies)

    strategies_cmd = sub.add_parser("strategies", help="list the strategies")

    chat_default = "react" if "react" in strategies else default
    chat = sub.add_parser(
        "chat", parents=[model], help="a conversation in the terminal, reasoning and tool use shown as they happen",
        description="Talk to the model; each turn runs a strategy and shows its steps as they happen. "
        "Older turns are left out when the conversation would not fit the model's context window.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("--strategy", "-s", default=chat_default, choices=sorted(strategies), metavar="NAME",
                      help=f"the strategy for each turn: {', '.join(sorted(strategies))} "
                      f"(default: {chat_default}; /strategy changes it)")
    chat.add_argument("--tools", default="calculator,python", help="comma-separated: calculator, python, search (default: calculator,python)")
    chat.add_argument("--docs", help="a folder of text/Markdown files for the search tool")
    chat.add_argument("--context-tokens", type=_positive, metavar="N",
                      help="the model's context window in tokens, to fit the conversation in "
                      "(default: what the backend reports, else 4096)")
    add_strategy_options(chat, strategies, skip=frozenset({"tools", "docs"}))  # the chat's own flags

    bench = sub.add_parser(
        "bench", parents=[model],
        help="run strategies on a benchmark and report accuracy and cost",
        description="Run one or more strategies on the same GSM8K questions, appending each result to "
        "OUT/results.jsonl as it finishes; then write OUT/summary.json and OUT/report.md.",
        epilog=EXIT_CODES + "\n\n" + EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("task", choices=["gsm8k"], help="the benchmark")
    bench.add_argument("--strategy", "-s", action="append", required=True, metavar="NAME[:OPT=V,...]",
                       help=f"a strategy to run: {', '.join(sorted(strategies))} (repeat for several; "
                       "options below apply to each that has them); with options it is a labelled variant, "
                       "e.g. -s 'self-consistency:samples=16,stopping=beta'")
    pick = bench.add_mutually_exclusive_group()
    pick.add_argument("--limit", type=_positive, metavar="N", help="the first N questions")
    pick.add_argument("--sample", type=_positive, metavar="N", help="N questions drawn at random, seeded by --seed (default 0)")
    bench.add_argument("--split", choices=["test", "train"], default="test")
    bench.add_argument("--data", metavar="PATH",
                       help="a GSM8K folder or any JSONL file (default: $REASONER_GSM8K, else the copy shipped with reasoner)")
    bench.add_argument("--question-field", default="question", metavar="F", help="JSONL field holding the question")
    bench.add_argument("--id-field", default="id", metavar="F",
                       help="JSONL field holding each question's id (default id; where absent: <file>-<line>)")
    bench.add_argument("--answer-field", default="answer", metavar="F",
                       help="JSONL field holding the answer: a number or GSM8K-style text ending in '#### N'")
    bench.add_argument("--name", metavar="NAME",
                       help="what the report calls the data (default: GSM8K for its splits, else the data file's name)")
    bench.add_argument("--concurrency", "-c", type=_positive, default=8,
                       help="questions in flight at once (default 8); above the backend's request bound "
                       f"({BACKEND_IN_FLIGHT}) it raises --max-in-flight to match")
    bench.add_argument("--out", "-o", metavar="DIR", help="run folder (default: runs/<timestamp>)")
    bench.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished questions")
    bench.add_argument("--retry-errors", action="store_true",
                       help="with --resume: run the questions that ended in an error again (their records move to errors.jsonl)")
    bench.add_argument("--scoring", choices=list(RULES), default="ours",
                       help="answer check: ours, or lm-evaluation-harness's strict / flexible exact match")
    bench.add_argument("--tolerance", type=_tolerance, metavar="SPEC",
                       help="how our rule matches numbers where a question sets none, e.g. rel=1e-6,places=3,sig=2")
    bench.add_argument("--bank", metavar="PATH", help="a sample bank file: record every model call there and replay recorded ones")
    bench.add_argument("--bank-mode", choices=list(BANK_MODES), default="record",
                       help="with --bank: record (use and record; default), replay (a missing sample is an error), refresh")
    add_strategy_options(bench, strategies)

    report = sub.add_parser("report", help="write and show the report of a benchmark run folder")
    report.add_argument("dir", help="the run folder (holding run.json and results.jsonl)")
    report.add_argument("--scoring", choices=list(RULES), help="rescore with this rule (default: the run's)")
    report.add_argument("--html", action="store_true", help="also write DIR/explorer.html, the results explorer (opens offline)")
    curves = sub.add_parser("curves", help="self-consistency accuracy at k = 1..K and accuracy against tokens, from a run or a bank")
    curves.add_argument("dir", metavar="RUN_OR_BANK",
                        help="a run folder (writes RUN/sc_curve.png, RUN/pareto.png, RUN/curves.json) or a --bank file")
    curves.add_argument("--data", metavar="PATH", help="for a bank: the questions and golds (a JSONL file or GSM8K folder; default GSM8K test)")
    curves.add_argument("--question-field", default="question", metavar="F", help="for a bank with --data FILE: the question field")
    curves.add_argument("--answer-field", default="answer", metavar="F", help="for a bank with --data FILE: the answer field")
    curves.add_argument("--out", "-o", metavar="DIR", help="for a bank: where to write (default: beside the bank, BANK.curves/)")
    curves.add_argument("--resamples", type=_positive, default=200, metavar="N", help="k-subsets drawn per question and k (default 200)")
    curves.add_argument("--seed", type=int, default=0, help="seed of the subset draws (default 0)")
    serve = sub.add_parser("serve", parents=[model], help=serve_command.HELP)
    serve_command.add_arguments(serve)
    from reasoner.cli import verifier as verifier_command

    verifier = sub.add_parser("verifier", help=verifier_command.HELP, description=verifier_command.HELP)
    verifier_command.add_arguments(verifier)
    parser.commands = {"solve": solve, "strategies": strategies_cmd, "chat": chat, "bench": bench, "report": report,
                       "serve": serve, "curves": curves, "verifier": verifier}
    return parser
