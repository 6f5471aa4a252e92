"""`reasoner verifier train`: train the mistake-finder (`classifier:PATH`) and print how it does."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reasoner.cli.console import console, err_console
from reasoner.data import DataError
from reasoner.verifiers.training import Evaluation, TrainConfig, train_from_gsm8k

HELP = "train a verifier: the mistake-finder used as --verifier classifier:PATH"
STAGES = {"traces": "making traces", "features": "reading features", "fit": "fitting", "threshold": "calibrating", "evaluate": "evaluating"}


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def _whole(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="verifier_command", required=True)
    train = sub.add_parser(
        "train", help="train the mistake-finder on GSM8K train with programmatic mistakes (and your labelled traces)",
        description="Make step-labelled traces from GSM8K train solutions with programmatic mistakes (wrong operand, "
        "wrong operation, dropped quantity, arithmetic slip), add any labelled traces given, fit the classifier, "
        "save it, and print its accuracy on held-out questions. Labelled traces are JSONL, one object a line: "
        '{"question": "...", "steps": ["...", "..."], "mistake_index": 1} (null: no mistake; "input" may name the question).',
    )  # fmt: skip
    train.add_argument("--out", "-o", default="mistake_finder.json", metavar="FILE", help="where to save the model (default mistake_finder.json)")
    train.add_argument("--labelled", action="append", default=[], metavar="JSONL", help="a file of labelled traces (repeatable)")
    train.add_argument("--limit", type=_whole, metavar="N", help="the first N GSM8K train problems (default all 7473)")
    train.add_argument("--per-problem", type=_whole, default=4, metavar="N", help="traces made from each problem (default 4)")
    train.add_argument("--mistake-share", type=_fraction, default=0.5, metavar="P", help="share of made traces given a mistake (default 0.5)")
    train.add_argument("--held-out", type=_fraction, default=0.1, metavar="P", help="share of questions held out to evaluate on (default 0.1)")
    train.add_argument("--epochs", type=_whole, default=8, metavar="N", help="passes over the training steps (default 8)")
    train.add_argument("--simulated", type=_whole, default=300, metavar="N",
                       help="also evaluate on step-simulator traces of the first N GSM8K test questions (default 300; 0: skip)")
    train.add_argument("--data", metavar="DIR", help="a GSM8K folder (default: $REASONER_GSM8K, else the copy shipped with reasoner)")
    train.add_argument("--seed", type=int, default=0, help="seed of the mistakes, the split and the fit (default 0)")


def run(args: argparse.Namespace) -> int:
    config = TrainConfig(
        limit=args.limit, per_problem=args.per_problem, mistake_share=args.mistake_share, labelled=args.labelled,
        held_out=args.held_out, epochs=args.epochs, simulated_questions=args.simulated, seed=args.seed, data=args.data,
    )  # fmt: skip
    columns = (TextColumn("{task.description:<18}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    started = time.perf_counter()
    try:
        # A bar per stage in a terminal; in a log, one line as each stage ends.
        with Progress(*columns, console=err_console, disable=not err_console.is_terminal) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, fraction: float) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=1.0)
                bar.update(tasks[stage], completed=fraction)
                if fraction >= 1.0 and not err_console.is_terminal:
                    err_console.print(f"{STAGES.get(stage, stage)}: done at {time.perf_counter() - started:.1f} s", highlight=False)

            result = train_from_gsm8k(config, progress)
    except (DataError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    path = result.model.save(Path(args.out))
    trained = result.model.trained
    console.print(
        f"trained on {trained['traces']} traces ({trained['labelled_steps']} labelled steps) of {trained['made_from']}"
        + (f" and {trained['user_traces']} labelled traces" if trained["user_traces"] else "")
        + f" in {result.seconds:.1f} s; {len(result.model.weights)} weights",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    console.print(table("held-out GSM8K train questions, mistakes made as in training", result.held_out))
    if result.simulated is not None:
        console.print(table("step-simulator traces of GSM8K test questions (its own slips)", result.simulated))
    if result.labelled_held_out is not None:
        console.print(table("held-out labelled traces", result.labelled_held_out))
    console.print(f"saved {path}; use it with --verifier classifier:{path}", highlight=False, soft_wrap=True, markup=False)
    return 0


def table(title: str, e: Evaluation) -> Table:
    t = Table(title=f"{title}: {e.traces} traces, {e.steps} steps; step accuracy {100 * e.step_accuracy:.1f}%")
    for column in ("first mistake", "traces", "classifier", "chance", "arith"):
        t.add_column(column, justify="left" if column == "first mistake" else "right")
    t.add_row("located (all traces)", str(e.traces), _pct(e.first_mistake_accuracy), _pct(e.chance_first_mistake), _pct(e.arith_first_mistake))
    for kind in sorted(e.recall, key=lambda k: (k not in ("arith", "logic"), k)):
        t.add_row(f"recall: {kind}", str(e.counts[kind]), _pct(e.recall[kind]), _pct(e.chance_recall[kind]), _pct(e.arith_recall[kind]))
    if e.clean_left_alone is not None:
        t.add_row("clean, none flagged", str(e.counts["clean"]), _pct(e.clean_left_alone), "", "")
    return t


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"
