"""What several strategies share: their templates, GSM8K exemplars, answer parsing of a step, and
the ways one strategy uses another (an inner strategy with the outer one's sampling settings, a
validated inner strategy name, falling back to another strategy)."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from typing import Any

from pydantic import AfterValidator, BaseModel

from reasoner.answers import extract_answer
from reasoner.run import Run
from reasoner.prompts import Templates
from reasoner.strategy import Strategy, available, get_strategy
from reasoner.types import Answer, Choice, Completion
from reasoner.tools.calculator import CalculatorError, calculate
from reasoner.strategies.confidence import trace_confidence

templates = Templates("reasoner.strategies")
CONFIDENCE_WINDOW = 32  # tokens in a trace-confidence group (DeepConf's default)


class Exemplar(BaseModel):
    question: str
    solution: str  # step-by-step, ending with "The answer is N."
    answer: str
    train_line: int | None = None


def gsm8k_solution(answer_field: str) -> tuple[str, str]:
    """A GSM8K answer field as (readable step-by-step solution, final number).

    The `<<48/2=24>>` calculator annotations are removed: they are not how people write, and
    models copy them.
    """
    body, _, final = answer_field.rpartition("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    final = final.strip().replace(",", "")
    return f"{body}\nThe answer is {final}.", final


@cache
def gsm8k_exemplars() -> tuple[Exemplar, ...]:
    """The shipped GSM8K train-split problems used as few-shot exemplars (MIT-licensed data)."""
    source = files("reasoner.strategies") / "prompts" / "gsm8k_exemplars.jsonl"
    out = []
    for line in source.read_text().splitlines():
        row = json.loads(line)
        solution, answer = gsm8k_solution(row["answer"])
        out.append(Exemplar(question=row["question"], solution=solution, answer=answer, train_line=row["train_line"]))
    return tuple(out)


def answer_from(completion: Completion, **details: object) -> Answer:
    """The answer a model call concluded, parsed from its first choice, with its log-probability
    (summed and per token) where the backend returned them: votes use these to weigh samples."""
    choice = completion.choices[0]
    return Answer(answer=extract_answer(choice.text), text=choice.text, details={**logprob_details(choice), **details})


def final_value(said: str) -> str | None:
    """The number a stated final answer gives. Models often state the sum itself (ReAct's
    `finish[12 * 7]`), whose last number is not the answer: an arithmetic expression is evaluated."""
    try:
        return extract_answer(calculate(said.strip().rstrip(".")))
    except CalculatorError:
        return extract_answer(said)


def logprob_details(choice: Choice) -> dict[str, float]:
    """The sample's log-probability figures; `trace_confidence` is DeepConf's (its lowest mean over
    sliding groups of CONFIDENCE_WINDOW tokens), the signal of self-consistency's confidence weighting."""
    if not choice.token_logprobs:
        return {}
    return {
        "logprob_sum": choice.sum_logprob or 0.0,
        "logprob_mean": choice.mean_logprob or 0.0,
        "trace_confidence": trace_confidence(choice.token_logprobs, CONFIDENCE_WINDOW),
    }


# -- one strategy using another ---------------------------------------------------------------


def sampling(strategy: Strategy, **overrides: Any) -> dict[str, Any]:
    """The sampling settings every strategy has (temperature, top_p, max_tokens, seed, logprobs),
    as `strategy` sets them, with `overrides` on top: the options an inner strategy is built with."""
    return {**{k: getattr(strategy, k) for k in Strategy.model_fields}, **overrides}


def inner_strategy(outer: Strategy, name: str, **options: Any) -> Strategy:
    """Strategy `name` sampling as `outer` does, with its own `options` on top."""
    return get_strategy(name, **sampling(outer, **options))


def strategy_name(*also: str, excluding: str | None = None, what: str = "strategy") -> AfterValidator:
    """A pydantic validator for a field naming another strategy: an installed one (not `excluding`,
    the strategy itself, where that would loop) or one of the special values `also`; the error
    calls it `what`.

    Use as `inner: Annotated[str, strategy_name("calculator", what="inner strategy")] = Field(...)`.
    """

    def check(name: str) -> str:
        if name in also or (name != excluding and name in available()):
            return name
        known = sorted({*also, *available()} - {excluding})
        raise ValueError(f"unknown {what} {name!r}; use one of: {', '.join(known)}")

    return AfterValidator(check)


def fallback_of(outer: Strategy) -> Strategy | None:
    """The strategy `outer` answers with when its own method fails, if any: its `fallback` option
    (pal, flowchart), else the one it always uses (`falls_back_to`: plan-dag, least-to-most). The
    chat sizes its history for that strategy's prompt too."""
    to = getattr(outer, "fallback", None) or getattr(type(outer), "falls_back_to", None)
    return inner_strategy(outer, to) if isinstance(to, str) and to != "none" else None


async def fall_back(
    outer: Strategy, run: Run, question: str, to: str, reason: str, notes: dict[str, Any] | None = None, **options: Any
) -> Answer:
    """Answer `question` with strategy `to` instead of `outer`'s own method (run in the scope
    "fallback", sampling as `outer` does, with `options`). The answer's details say so:
    details["fallback"] is the strategy that answered (a run's report counts these),
    details["fallback_reason"] why; `notes` are what `outer` found before giving up."""
    answer = await run.solve(inner_strategy(outer, to, **options), question, scope="fallback")
    details = {**(notes or {}), **answer.details, "fallback": to, "fallback_reason": reason}
    return answer.model_copy(update={"details": details})
