"""Which questions a run asks, under which strategy labels, and in what order."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reasoner.data import DataError, Problem, gsm8k_path, load_jsonl
from reasoner.strategy import Strategy, get_strategy

if TYPE_CHECKING:
    from reasoner.bench.gsm8k import BenchConfig


class BenchError(Exception):
    """The run cannot start or go on as asked (e.g. resuming with other settings)."""


@dataclass(frozen=True)
class Questions:
    problems: list[Problem]
    path: Path
    #: What the run is scored on: GSM8K for its split files, else the data file's name (or --name).
    benchmark: str
    #: The GSM8K split, or None for a data file of one's own (which has no splits).
    split: str | None


def select_problems(config: BenchConfig) -> Questions:
    """The chosen questions, in data-file order, and where they came from."""
    if config.limit is not None and config.sample is not None:
        raise BenchError("choose --limit or --sample, not both")
    path = gsm8k_path(config.split, config.data).resolve()
    # Ids of a file named directly follow its own name; the split files get stable gsm8k-* ids.
    own_file = config.data is not None and Path(config.data).is_file()
    problems = load_jsonl(
        path,
        question_field=config.question_field,
        answer_field=config.answer_field,
        id_field=config.id_field,
        id_prefix=None if own_file else f"gsm8k-{config.split}",
    )
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise DataError(f"{path}: question id {p.id!r} occurs more than once; results are kept by id")
        seen.add(p.id)
    if config.limit is not None:
        problems = problems[: config.limit]
    if config.sample is not None:
        if config.sample > len(problems):
            raise DataError(f"--sample {config.sample} is more than the {len(problems)} questions in {path}")
        chosen = random.Random(config.seed or 0).sample(range(len(problems)), config.sample)
        problems = [problems[i] for i in sorted(chosen)]
    if not problems:
        raise DataError(f"{path} holds no questions")
    benchmark = config.name or (path.stem if own_file else "GSM8K")
    return Questions(problems, path, benchmark, None if own_file else config.split)


def labelled(strategies: Sequence[str | Strategy] | Mapping[str, Strategy]) -> dict[str, Strategy]:
    """Strategies by label: their names, or the labels of a mapping (one strategy, two settings)."""
    if isinstance(strategies, Mapping):
        out = dict(strategies)
    else:
        out = {}
        for s in strategies:
            strategy = get_strategy(s)
            if strategy.name in out:
                raise BenchError(f"strategy {strategy.name!r} is given twice; label the settings apart with a mapping")
            out[strategy.name] = strategy
    if not out:
        raise BenchError("name at least one strategy")
    return out


def job_order(problems: list[Problem], labels: list[str], block: int) -> Iterator[tuple[str, Problem]]:
    """Blocks of `block` questions; within a block, one strategy after the other.

    Blocks keep the strategies level, so a partial run compares them on nearly the same
    questions; within a block, one strategy's prompts follow each other, so a backend's prefix
    cache (llama.cpp keeps the last prompt; vLLM caches prefixes) reuses what they share, such
    as few-shot exemplars. On the embedded model this halves the run time.
    """
    for start in range(0, len(problems), block):
        chunk = problems[start : start + block]
        for label in labels:
            for problem in chunk:
                yield label, problem
