"""Tree of thought (Yao et al. 2023, "Tree of Thoughts: Deliberate Problem Solving with Large
Language Models"), on GSM8K.

A state is the question plus the reasoning lines written so far (one line = one thought); it is
terminal once a line gives the answer ("The answer is N."), or at the depth limit. Three roles,
each swappable by an option as in llm-reasoners: a step generator proposes next lines from each
state (`sample`: `candidates` independent samples of one line, one request with n; `propose`: one
prompt listing `candidates` different next lines); an evaluator scores the new states (`value`:
`n_evaluate` sure/likely/impossible verdicts, averaged with the paper's 20/1/0.001 map; `vote`:
`n_evaluate` votes for the most promising of a round's states, score = votes; `verifier`: any
verifier spec scores each state's lines, reduced by `aggregate`); and a search
(strategies/tree_search.py) keeps the best: `bfs`, a beam of `breadth` states for up to `depth`
levels, or `dfs`, best-first descent that prunes states under `threshold` and backtracks. The
answer is the best finished state's (`final="best"`; states that gave an answer rank above those
cut off by the depth limit) or the majority answer of the states that gave one (`"vote"`).

Defaults, for GSM8K: sample, because a solution line is open-ended text (propose suits small
closed move sets like Game of 24); value, because it rates each state on its own; bfs with
breadth 3 and 3 candidates per state, so a level costs at most 3 sampling requests and 9 ratings;
depth 6, because GSM8K solutions take 2 to 8 lines, most 3 to 5 plus the answer line; generation
at temperature 0.7 so the samples differ, ratings at 0.3 so 3 of them mostly agree but still
average to a graded score; a step is one line, so 64 tokens; a verdict is one word, so 8. For dfs,
threshold 0.5 prunes a state that most of its ratings call impossible (with votes: one no vote
chose), and 12 expansions allow about two full descents.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import ClassVar, Literal

from pydantic import Field

from reasoner.answers import extract_answer
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer, Completion, GenerationRequest
from reasoner.verifiers import Aggregation, VerifierSpec, open_verifier
from reasoner.strategies.common import gsm8k_exemplars, templates
from reasoner.strategies.stepwise import gives_answer
from reasoner.strategies.tree_search import SearchNode, SearchResult, bfs, dfs

State = tuple[str, ...]  # the reasoning lines so far

VALUES = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}
_VERDICT = re.compile(r"\b(sure|likely|impossible)\b", re.IGNORECASE)
_ITEM = re.compile(r"^[ \t]*\d+[ \t]*[.):][ \t]*(?P<text>.+?)[ \t]*$", re.MULTILINE)


def rating(completion: Completion) -> float | None:
    """The mean value of the verdicts; None when no sample names one."""
    verdicts = [m[1].lower() for m in (_VERDICT.search(c.text) for c in completion.choices) if m]
    return sum(VALUES[v] for v in verdicts) / len(verdicts) if verdicts else None


def vote_counts(completion: Completion, choices: int) -> list[float]:
    """Votes per choice: each sample's first number, when it names a choice."""
    counts = [0.0] * choices
    for sample in completion.choices:
        number = re.search(r"\d+", sample.text)
        if number and 1 <= int(number[0]) <= choices:
            counts[int(number[0]) - 1] += 1
    return counts


class Role:
    """A generator or an evaluator for one question, with the strategy's options."""

    def __init__(self, options: TreeOfThought, question: str) -> None:
        self.options, self.question = options, question


class Generator(Role):
    """Proposes next lines. A round's requests start in one gather: they run at once, and any
    identical ones are one request with n."""

    label: ClassVar[str]

    async def next_lines(self, run: Run, nodes: Sequence[SearchNode]) -> list[list[str]]:
        replies = await run.gather(*(run.generate(self.request(n.state), label=f"{self.label}@{n.tag}") for n in nodes))
        return [self.lines(r) for r in replies]  # type: ignore[arg-type]  # not tolerant: no exceptions

    def request(self, state: State) -> GenerationRequest: ...

    def lines(self, completion: Completion) -> list[str]: ...


class Sample(Generator):
    label = "sample"

    def request(self, state: State) -> GenerationRequest:
        user = templates.render("tree_of_thought/step.j2", exemplars=gsm8k_exemplars()[: self.options.k], question=self.question)
        prefill = templates.render("tree_of_thought/partial.j2", steps=state)
        return self.options.turn(user, prefill, n=self.options.candidates, stop=("\n",))

    def lines(self, completion: Completion) -> list[str]:
        # The first line only, in case a backend ignores the stop, without an "A:" that a model
        # not shown the prefill as its own may write; an empty sample is no step.
        lines = (re.sub(r"^A:", "", c.text.strip()).split("\n")[0].strip() for c in completion.choices)
        return [line for line in lines if line]


class Propose(Generator):
    label = "propose"

    def request(self, state: State) -> GenerationRequest:
        user = templates.render("tree_of_thought/propose.j2", question=self.question, steps=state, k=self.options.candidates)
        prefill = templates.render("tree_of_thought/numbered.j2")
        return self.options.turn(user, prefill, max_tokens=self.options.max_tokens * self.options.candidates, stop=("\n\n",))

    def lines(self, completion: Completion) -> list[str]:
        text = completion.text
        # The prefill "1." continued, or (where it could not be prefilled) a list begun anew.
        numbered = text if _ITEM.match(text.lstrip()) else templates.render("tree_of_thought/numbered.j2") + text
        return [m["text"] for m in _ITEM.finditer(numbered)][: self.options.candidates]


class Evaluator(Role):
    """Scores a round's new states, higher is better; its calls for the round start together."""

    unrated = 0  # states whose ratings named no verdict; scored as "likely", not killed

    async def score(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[float]: ...

    def rate(self, user: str, prefill_template: str) -> GenerationRequest:
        tot = self.options
        prefill = templates.render(prefill_template)
        return tot.turn(user, prefill, n=tot.n_evaluate, temperature=tot.eval_temperature, max_tokens=tot.eval_max_tokens, stop=("\n",))


class Value(Evaluator):
    async def score(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[float]:
        def request(n: SearchNode) -> GenerationRequest:
            user = templates.render("tree_of_thought/value.j2", question=self.question, steps=n.state)
            return self.rate(user, "tree_of_thought/verdict.j2")

        replies = await run.gather(*(run.generate(request(n), label=f"value@{n.tag}") for n in nodes))
        scores = [rating(r) for r in replies]  # type: ignore[arg-type]  # not tolerant: no exceptions
        self.unrated += scores.count(None)
        return [VALUES["likely"] if s is None else s for s in scores]


class Vote(Evaluator):
    async def score(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[float]:
        user = templates.render("tree_of_thought/vote.j2", question=self.question, choices=[n.state for n in nodes])
        ballot = await run.generate(self.rate(user, "tree_of_thought/best.j2"), label=f"vote@{tag}")
        return vote_counts(ballot, len(nodes))


class Verify(Evaluator):
    def __init__(self, options: TreeOfThought, question: str) -> None:
        super().__init__(options, question)
        self.verifier = open_verifier(options.verifier)  # once, not per round

    async def score(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[float]:
        judged = (run.verify(self.verifier, self.question, list(n.state), label=f"verify@{n.tag}") for n in nodes)
        verdicts = await run.gather(*judged)
        return [v.score(self.options.aggregate) for v in verdicts]  # type: ignore[union-attr]  # not tolerant: no exceptions


GENERATORS: dict[str, type[Generator]] = {"sample": Sample, "propose": Propose}
EVALUATORS: dict[str, type[Evaluator]] = {"value": Value, "vote": Vote, "verifier": Verify}


class Thoughts:
    """The search's `Space`: a state grows by the generator's lines and is scored by the evaluator."""

    def __init__(self, generator: Generator, evaluator: Evaluator) -> None:
        self.generator, self.evaluator = generator, evaluator

    def is_terminal(self, state: State) -> bool:
        return bool(state) and gives_answer(state[-1])

    async def expand(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[list[State]]:
        lines = await self.generator.next_lines(run, nodes)
        return [[(*n.state, line) for line in new] for n, new in zip(nodes, lines, strict=True)]

    async def evaluate(self, run: Run, nodes: Sequence[SearchNode], tag: str) -> list[float]:
        return await self.evaluator.score(run, nodes, tag)


class TreeOfThought(Strategy):
    name = "tree-of-thought"
    summary = "Search over reasoning lines: propose next lines, rate the states, keep the best (BFS beam or DFS)."

    search: Literal["bfs", "dfs"] = Field("bfs", description="bfs: a beam per level; dfs: best-first descent, pruning")
    generator: Literal["sample", "propose"] = Field(
        "sample", description="sample: independent next lines; propose: one prompt listing several"
    )
    evaluator: Literal["value", "vote", "verifier"] = Field(
        "value",
        description="value: rate each state sure/likely/impossible; vote: pick the best of a round; verifier: --verifier scores it",
    )
    verifier: VerifierSpec = Field("arith", description="evaluator=verifier: arith, judge, judge:MODEL_SPEC or prm:URL (scores in [0, 1])")
    aggregate: Aggregation = Field("min", description="evaluator=verifier: step scores as one: min, product or last")
    breadth: int = Field(3, ge=1, description="bfs: states kept per level")
    depth: int = Field(6, ge=1, description="most reasoning lines in a solution")
    candidates: int = Field(3, ge=1, le=32, description="next lines proposed per state")
    n_evaluate: int = Field(3, ge=1, le=32, description="ratings (value) or votes (vote) per evaluation")
    threshold: float = Field(
        0.5, ge=0.0, description="dfs: prune states scored below this (value: likely=1, impossible=0.001; vote: votes)"
    )
    max_expansions: int = Field(12, ge=1, description="dfs: most states expanded before the search gives up")
    final: Literal["best", "vote"] = Field(
        "best", description="the answer: the best-scored finished state's, or the majority of the complete ones"
    )
    k: int = Field(4, ge=0, le=8, description="number of exemplars (GSM8K train problems shipped with the package)")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    eval_temperature: float = Field(0.3, ge=0.0, le=2.0, description="temperature of the ratings and votes")
    max_tokens: int = Field(64, ge=1, description="tokens per reasoning line (propose: per proposed line)")
    eval_max_tokens: int = Field(8, ge=1, description="tokens per rating or vote")

    async def forward(self, run: Run, question: str) -> Answer:
        evaluator = EVALUATORS[self.evaluator](self, question)
        space = Thoughts(GENERATORS[self.generator](self, question), evaluator)
        if self.search == "bfs":
            search = partial(bfs, breadth=self.breadth, depth=self.depth)
        else:
            search = partial(dfs, depth=self.depth, threshold=self.threshold, max_expansions=self.max_expansions)
        return self.conclude(await search(run, (), space), evaluator.unrated)

    def conclude(self, result: SearchResult, unrated: int) -> Answer:
        # An unfinished state's answer is the last number it reached: a guess, ranked last.
        answers = [extract_answer("\n".join(n.state)) if n.state else None for n in result.finished]
        details = {
            "search": result.stats,
            "unrated": unrated,
            "finished": [
                {"id": n.id, "answer": a, "score": n.score, "complete": n.terminal} for n, a in zip(result.finished, answers)
            ],
        }
        if not result.finished:
            return Answer(answer=None, text="", details={**details, "best_path": []})
        chosen, answer = result.finished[0], answers[0]
        complete = [(n, a) for n, a in zip(result.finished, answers) if a is not None and n.terminal]
        if self.final == "vote" and complete:
            votes = Counter(a for _, a in complete)  # ties go to the better-ranked answer
            answer = votes.most_common(1)[0][0]
            chosen = next(n for n, a in complete if a == answer)
            details["votes"] = dict(votes)
        return Answer(
            answer=answer,
            text="\n".join(chosen.state),
            score=chosen.score,
            details={**details, "best_path": list(chosen.state), "best_score": chosen.score},
        )
