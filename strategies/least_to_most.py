"""Least-to-most prompting (Zhou et al. 2022, "Least-to-Most Prompting Enables Complex Reasoning in
Large Language Models").

Two stages:
1. decomposition: worked GSM8K problems, each broken into numbered sub-questions whose last is the
   problem's own question, precede ours; the model lists our sub-questions;
2. sub-problem solving: the sub-questions are answered in order, each prompt carrying the problem
   and every earlier sub-question with its answer. The last answer is the answer.

The model calls are `decompose`, then `solve1` … `solveN`, one after the other. A list with no
sub-question, or with more than `max_subquestions`, is no plan to follow: few-shot chain-of-thought
answers instead (in the scope "fallback"; details["fallback"] names the strategy,
details["fallback_reason"] says why).

The list is asked for with the assistant's reply begun as in the exemplars ("Sub-questions:",
then "1."), which holds a model to their format. Greedy by default: one chain is followed, so
sampling only adds noise (self-consistency can wrap this strategy for votes). GSM8K problems take
2 to 8 steps, hence the cap of 8 sub-questions.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import ClassVar

from pydantic import BaseModel, Field

from reasoner.answers import extract_answer
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer, GenerationRequest
from reasoner.strategies.common import fall_back, logprob_details, templates

# "1. …", "2) …", "(3) …", "- …", "* …", "• …": one sub-question per list item.
_ITEM = re.compile(r"^\s*(?:\(?\d+\s*[.):]|[-*•])\s*(?P<text>.*?)\s*$")


class Step(BaseModel):
    question: str
    answer: str


class Exemplar(BaseModel):
    question: str
    steps: list[Step]
    train_line: int


@cache
def exemplars() -> tuple[Exemplar, ...]:
    """Four GSM8K train problems with our own decompositions and sub-answers."""
    source = files("reasoner.strategies") / "prompts" / "least_to_most" / "exemplars.jsonl"
    return tuple(Exemplar.model_validate_json(line) for line in source.read_text().splitlines() if line.strip())


def parse_subquestions(text: str) -> list[str]:
    """The numbered or bulleted items of a decomposition, in order; other lines are ignored."""
    items = (_ITEM.match(line) for line in text.splitlines())
    return [m["text"] for m in items if m and re.search(r"[A-Za-z]", m["text"])]


def continued(prefill: str, text: str) -> str:
    """The list as the model wrote it: the prefill's continuation, unless the model started the list
    itself (a backend that cannot prefill shows the prefill as the end of the user's turn)."""
    first = text.strip().split("\n")[0]
    return text if _ITEM.match(first) or first.endswith(":") else prefill + text


def reply(text: str) -> str:
    """A sub-answer without an "A:" the model may have repeated."""
    return re.sub(r"^\s*A:", "", text).strip()


def asked(question: str) -> str:
    """The sentence a problem asks: its last sentence ending in "?" (else the whole problem)."""
    sentences = re.split(r"(?<=[.?!])\s+", question.strip())
    return next((s for s in reversed(sentences) if s.endswith("?")), question.strip())


def ends_with_question(subquestions: list[str], question: str) -> bool:
    """Whether the last sub-question is the problem's own question (in words, ignoring punctuation)."""
    def words(s: str) -> str:
        return " " + " ".join(re.findall(r"[a-z0-9]+", s.lower())) + " "

    return bool(subquestions) and words(asked(question)) in words(subquestions[-1])


class LeastToMost(Strategy):
    name = "least-to-most"
    falls_back_to: ClassVar[str] = "few-shot-cot"  # when its own method fails (`common.fallback_of`)
    summary = "Decompose into sub-questions (few-shot), then answer them in order, each seeing the earlier answers."

    k: int = Field(4, ge=0, le=4, description="number of exemplars (GSM8K train problems shipped with the package)")
    max_subquestions: int = Field(8, ge=1, description="most sub-questions in a plan (more, or none, is a bad plan)")
    decompose_max_tokens: int = Field(160, ge=1, description="tokens for the list of sub-questions")
    max_tokens: int = Field(256, ge=1, description="tokens per sub-question answer (and for the fallback's solution)")

    async def forward(self, run: Run, question: str) -> Answer:
        # Stage 1: decomposition.
        prefill = templates.render("least_to_most/list.j2")
        ask = templates.render("least_to_most/decompose.j2", exemplars=exemplars()[: self.k], question=question)
        request = self.turn(ask, prefill, max_tokens=self.decompose_max_tokens, stop=("\n\n", "\nQ:"))
        raw = continued(prefill, (await run.generate(request, label="decompose")).text)
        listed = parse_subquestions(raw)
        if not listed or len(listed) > self.max_subquestions:
            reason = (
                "no sub-questions in the decomposition"
                if not listed
                else f"{len(listed)} sub-questions, more than max_subquestions={self.max_subquestions}"
            )
            return await fall_back(self, run, question, self.falls_back_to, reason, {"decomposition": raw}, k=self.k)
        appended = not ends_with_question(listed, question)
        subquestions = listed + [asked(question)] if appended else listed

        # Stage 2: sub-problem solving, in order, each prompt carrying every earlier answer.
        steps: list[Step] = []
        for i, current in enumerate(subquestions, 1):
            solved = await run.generate(self._solve(question, steps, current), label=f"solve{i}")
            steps.append(Step(question=current, answer=reply(solved.text)))
        return Answer(
            answer=extract_answer(steps[-1].answer),
            text=templates.render("least_to_most/transcript.j2", steps=steps).strip(),
            details={
                "subquestions": subquestions,
                "subanswers": [s.answer for s in steps],
                "appended_question": appended,
                "decomposition": raw,
                **logprob_details(solved.choices[0]),
            },
        )

    def _solve(self, question: str, solved: list[Step], current: str) -> GenerationRequest:
        """The request for sub-question `current`, the ones before it `solved`."""
        prompt = templates.render(
            "least_to_most/solve.j2", exemplars=exemplars()[: self.k], question=question, solved=solved, current=current
        )
        return self.turn(prompt, templates.render("least_to_most/answer.j2"), stop=("\nQ:", "\nProblem:", "\n\n"))
