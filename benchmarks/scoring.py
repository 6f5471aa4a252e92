"""One question under one strategy: solve it, score the answer under every rule, make its records."""

from __future__ import annotations

import time
from typing import Any

from reasoner.answers import is_correct, score
from reasoner.backends.base import Backend
from reasoner.bench.lm_eval import cot_strict
from reasoner.bench.record import Record
from reasoner.data import Problem
from reasoner.numbers import Tolerance
from reasoner.strategy import Strategy


def fallback_of(details: dict[str, Any]) -> str | None:
    """The strategy a solution fell back to, from its details (absent or None: it did not)."""
    value = details.get("fallback")
    if value is None or value is False or value == "":
        return None
    return str(value)


async def solve_one(
    label: str, strategy: Strategy, problem: Problem, backend: Backend, scoring: str, session: int,
    tolerance: Tolerance | None = None,
) -> tuple[Record, dict[str, Any]]:
    """(result record, trace record) for one question. Errors become part of the record. Our rule
    judges with the question's own tolerance, else the run's `tolerance`, else the default."""
    started = time.time()
    answer, text, error = None, "", None
    calls = prompt_tokens = completion_tokens = 0
    latency = 0.0
    trace: dict[str, Any] = {}
    details: dict[str, Any] = {}
    try:
        solution = await strategy.solve(problem.question, backend)
    except Exception as exc:  # noqa: BLE001 - a strategy that cannot even build its graph fails this question only
        error = f"{type(exc).__name__}: {exc}"
        latency = time.time() - started
    else:
        # solution.error already names the step where the failure began (the core's root cause).
        answer, text, error = solution.answer, solution.text, solution.error
        u = solution.usage
        calls, prompt_tokens, completion_tokens, latency = u.calls, u.prompt_tokens, u.completion_tokens, u.latency_s
        trace, details = solution.trace, solution.details
    # Each lm-evaluation-harness rule's (prediction, verdict); the record names its fields after the rule.
    lm_eval = {
        "lm-eval-strict": score(text, problem.answer_field, "lm-eval-strict"),
        "lm-eval-cot-strict": cot_strict(text, problem.answer_field),
        "lm-eval-flexible": score(text, problem.answer_field, "lm-eval-flexible"),
    }
    ours_ok = is_correct(answer, problem.gold, problem.tolerance or tolerance)
    verdicts = {"ours": ours_ok, **{rule: ok for rule, (_, ok) in lm_eval.items()}}
    by_rule: dict[str, Any] = {}
    for rule, (prediction, ok) in lm_eval.items():
        field = rule.replace("-", "_")
        by_rule[f"prediction_{field}"], by_rule[f"correct_{field}"] = prediction, ok
    record = Record(
        strategy=label,
        id=problem.id,
        question=problem.question,
        gold=problem.gold,
        prediction=answer,
        correct=verdicts[scoring],
        correct_ours=ours_ok,
        **by_rule,
        text=text,
        calls=calls,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=round(latency, 4),
        error=error,
        fallback=fallback_of(details),
        session=session,
        started_at=round(started, 4),
        finished_at=round(time.time(), 4),
    )
    return record, {"strategy": label, "id": problem.id, "details": details, "trace": trace}
