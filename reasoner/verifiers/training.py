"""Training and evaluating the mistake-finder (`classifier.py`): `reasoner verifier train`.

A logistic regression over sparse step features, fitted by AdaGrad on the labelled steps
(a step after a user-labelled first mistake is unlabelled and left out), in pure Python so it
trains on two cores in about a minute (GSM8K train, 4 traces a problem). The decision threshold is then chosen on calibration
traces (a tenth of the training questions, not fitted on) to maximise first-mistake accuracy, the
measure Tyen et al. report: the first flagged step, or "no mistake", is the true first mistake.

The evaluation (`evaluate`) reports, on traces of questions never trained on: step accuracy,
first-mistake accuracy, the recall (first mistake found at its step) on arithmetic slips and on
logic slips separately, clean traces left alone, and the same for chance (a location drawn
uniformly from "no mistake" and each step) and for the calculator (`arith`) on the same traces.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from reasoner.data import Problem
from reasoner.simulators.steps import StepSimulator
from reasoner.tools.arith_check import check_steps
from reasoner.verifiers.classifier import MistakeFinder
from reasoner.verifiers.features import trace_features
from reasoner.verifiers.mistakes import Trace, judged

Progress = Callable[[str, float], None]


def _quiet(stage: str, fraction: float) -> None:
    pass


def fit(
    traces: Sequence[Trace], *, epochs: int = 8, rate: float = 0.1, l2: float = 1e-5, seed: int = 0, progress: Progress = _quiet
) -> dict[str, float]:
    """Weights of a logistic regression on the labelled steps (AdaGrad, L2)."""
    rows: list[tuple[dict[str, float], int]] = []
    for i, t in enumerate(traces):
        for f, label in zip(trace_features(t.question, t.steps), t.labels):
            if label is not None:
                rows.append((f, label))
        if i % 500 == 0:
            progress("features", i / max(len(traces), 1))
    progress("features", 1.0)
    weights: dict[str, float] = {}
    squares: dict[str, float] = {}
    order = list(range(len(rows)))
    rng = random.Random(seed)
    for epoch in range(epochs):
        rng.shuffle(order)
        for n, j in enumerate(order):
            f, label = rows[j]
            z = sum(weights.get(k, 0.0) * v for k, v in f.items())
            p = 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))
            g = p - label
            for k, v in f.items():
                grad = g * v + l2 * weights.get(k, 0.0)
                squares[k] = squares.get(k, 0.0) + grad * grad
                weights[k] = weights.get(k, 0.0) - rate * grad / math.sqrt(squares[k] + 1e-8)
            if n % 5000 == 0:
                progress("fit", (epoch + n / len(order)) / epochs)
    progress("fit", 1.0)
    return {k: round(v, 5) for k, v in weights.items() if abs(v) > 1e-5}


def best_threshold(model: MistakeFinder, traces: Sequence[Trace]) -> float:
    """The logit threshold giving the most traces whose first flagged step is the true first mistake."""
    scored = [(model.logits(t.question, t.steps), t.first_mistake) for t in traces]
    candidates = sorted({round(z, 2) for logits, _ in scored for z in logits if -6 < z < 6})
    best, best_right = 0.0, -1
    for c in candidates[:: max(1, len(candidates) // 200)]:
        right = sum(next((i for i, z in enumerate(logits) if z > c), None) == truth for logits, truth in scored)
        if right > best_right:
            best, best_right = c, right
    return best


class Evaluation(BaseModel):
    """How a locator did on held-out traces."""

    traces: int
    steps: int
    step_accuracy: float
    first_mistake_accuracy: float
    #: First mistake found at its step, by the mistake's kind ("arith", "logic") and, for traces made
    #: here, by the mistake made ("operand", "operation", "dropped", "arith").
    recall: dict[str, float]
    counts: dict[str, int]
    #: Clean traces where nothing was flagged.
    clean_left_alone: float | None
    chance_first_mistake: float
    chance_recall: dict[str, float]
    arith_first_mistake: float
    arith_recall: dict[str, float]


def evaluate(model: MistakeFinder, traces: Sequence[Trace]) -> Evaluation:
    steps = right_steps = right_first = 0
    found: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    chance: Counter[str] = Counter()
    arith: Counter[str] = Counter()
    chance_all = arith_all = 0.0
    for t in traces:
        logits = model.logits(t.question, t.steps)
        flags = [z > model.threshold for z in logits]
        for flag, label in zip(flags, t.labels):
            if label is not None:
                steps += 1
                right_steps += flag == bool(label)
        predicted = next((i for i, flag in enumerate(flags) if flag), None)
        truth = t.first_mistake
        arith_said = check_steps(t.steps).first_error
        right_first += predicted == truth
        chance_all += 1 / (len(t.steps) + 1)
        arith_all += arith_said == truth
        groups = ["clean"] if truth is None else [g for g in {t.kind or "unknown", t.made} if g != "user"]
        for g in groups:
            totals[g] += 1
            found[g] += predicted == truth
            chance[g] += 1 / (len(t.steps) + 1)
            arith[g] += arith_said == truth
    n = max(len(traces), 1)
    kinds = [g for g in totals if g != "clean"]
    return Evaluation(
        traces=len(traces),
        steps=steps,
        step_accuracy=right_steps / max(steps, 1),
        first_mistake_accuracy=right_first / n,
        recall={g: found[g] / totals[g] for g in kinds},
        counts=dict(totals),
        clean_left_alone=found["clean"] / totals["clean"] if totals["clean"] else None,
        chance_first_mistake=chance_all / n,
        chance_recall={g: chance[g] / totals[g] for g in kinds},
        arith_first_mistake=arith_all / n,
        arith_recall={g: arith[g] / totals[g] for g in kinds},
    )


def simulated_traces(problems: Sequence[Problem], *, per_problem: int = 4, arith_rate: float = 0.06, logic_rate: float = 0.06,
                     seed: int = 0) -> list[Trace]:  # fmt: skip
    """Traces the step simulator writes, with its own slips, labelled by it: held-out questions in
    the very form the backtracking benchmarks see."""
    sim = StepSimulator(problems, arith_rate=arith_rate, logic_rate=logic_rate, seed=seed)
    out = []
    for p in problems:
        if not sim.usable(p.question):
            continue
        for t in range(per_problem):
            steps = sim.continue_from(sim.problems[p.question], [], random.Random(f"{seed}:{p.id}:{t}"))
            trace = judged(sim, p.question, steps, source="simulator")
            trace.made = trace.kind or "clean"
            out.append(trace)
    return out


def train(
    traces: Sequence[Trace], *, calibration: Sequence[Trace], epochs: int = 8, l2: float = 1e-5, seed: int = 0, progress: Progress = _quiet,
    about: dict[str, Any] | None = None,
) -> MistakeFinder:  # fmt: skip
    started = time.perf_counter()
    weights = fit(traces, epochs=epochs, seed=seed, progress=progress, l2=l2)
    model = MistakeFinder(weights=weights)
    progress("threshold", 0.0)
    model.threshold = best_threshold(model, calibration)
    progress("threshold", 1.0)
    model.trained = {
        **(about or {}),
        "traces": len(traces),
        "labelled_steps": sum(label is not None for t in traces for label in t.labels),
        "calibration_traces": len(calibration),
        "epochs": epochs,
        "seed": seed,
        "fit_seconds": round(time.perf_counter() - started, 1),
    }
    return model


class TrainConfig(BaseModel):
    """What `reasoner verifier train` trains on."""

    #: GSM8K train problems to make traces from (None: all the shipped split holds).
    limit: int | None = None
    per_problem: int = 4
    mistake_share: float = 0.5
    #: User-labelled JSONL files (BIG-Bench Mistake's shape), added to the made traces.
    labelled: list[str] = []
    held_out: float = 0.1
    epochs: int = 8
    l2: float = 1e-5
    #: GSM8K test questions whose simulator traces are the second held-out set (0: none).
    simulated_questions: int = 300
    seed: int = 0
    data: str | None = None


class TrainResult(BaseModel):
    model: MistakeFinder
    held_out: Evaluation
    simulated: Evaluation | None
    labelled_held_out: Evaluation | None
    seconds: float


def train_from_gsm8k(config: TrainConfig, progress: Progress = _quiet) -> TrainResult:
    """Make traces from GSM8K train (and read the user's), hold out a tenth of the questions, fit,
    calibrate, and evaluate on the held-out questions and on simulator traces of GSM8K test."""
    from reasoner.data import load_gsm8k
    from reasoner.verifiers.mistakes import load_labelled, made_traces, split_by_question

    started = time.perf_counter()
    user = [t for path in config.labelled for t in load_labelled(path)]
    problems = load_gsm8k("train", config.data)[: config.limit]
    progress("traces", 0.0)
    made = made_traces(problems, per_problem=config.per_problem, mistake_share=config.mistake_share, seed=config.seed)
    progress("traces", 1.0)
    fitted, held = split_by_question(made, config.held_out, seed=config.seed)
    user_fit, user_held = split_by_question(user, config.held_out, seed=config.seed) if user else ([], [])
    fitted, calibration = split_by_question(fitted + user_fit, 0.1, seed=config.seed + 1)
    if not fitted or not calibration or not held:
        raise ValueError(
            f"too few traces to train, calibrate and evaluate on ({len(made)} made from {len(problems)} problems, "
            f"{len(user)} labelled, held out {config.held_out:g}); raise --limit or --per-problem, or lower --held-out"
        )
    about = {"made_from": f"GSM8K train, {len(problems)} problems", "per_problem": config.per_problem,
             "mistake_share": config.mistake_share, "labelled_files": config.labelled, "user_traces": len(user)}  # fmt: skip
    model = train(fitted, calibration=calibration, epochs=config.epochs, l2=config.l2, seed=config.seed, progress=progress, about=about)
    progress("evaluate", 0.0)
    held_eval = evaluate(model, held)
    simulated = None
    if config.simulated_questions:
        tests = load_gsm8k("test", config.data)[: config.simulated_questions]
        simulated = evaluate(model, simulated_traces(tests, seed=config.seed))
    user_eval = evaluate(model, user_held) if user_held else None
    progress("evaluate", 1.0)
    seconds = round(time.perf_counter() - started, 1)
    model.trained.update(
        seconds=seconds, held_out=held_eval.model_dump(), simulated=simulated.model_dump() if simulated else None,
        labelled_held_out=user_eval.model_dump() if user_eval else None,
    )  # fmt: skip
    return TrainResult(model=model, held_out=held_eval, simulated=simulated, labelled_held_out=user_eval, seconds=seconds)
