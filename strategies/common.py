"""What several strategies share: their templates, GSM8K exemplars, and answer parsing of a step."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files

from pydantic import BaseModel

from reasoner.answers import extract_answer
from reasoner.prompts import Templates
from reasoner.types import Answer, Choice, Completion
from reasoner.tools.calculator import CalculatorError, calculate

templates = Templates("reasoner.strategies")


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
    if not choice.token_logprobs:
        return {}
    return {"logprob_sum": choice.sum_logprob or 0.0, "logprob_mean": choice.mean_logprob or 0.0}
