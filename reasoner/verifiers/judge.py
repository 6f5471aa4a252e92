"""The LLM judge: a model is asked whether a step (or a whole solution) is correct.

The score is P("yes"). Where the backend returns log-probabilities, one greedy verdict gives it:
the first token's probability p, read as p for a "Yes" and 1 - p for a "No" (only the chosen
token's probability comes back, so the rest of the mass is taken to be the other verdict's).
Where it returns none, `votes` verdicts are sampled at temperature 1 and the score is the share
of them saying yes. `judge` asks the model that generates; `judge:MODEL_SPEC` asks another
(opened from the spec for each call and closed after it; its calls are recorded on their nodes).

What it catches depends on the judge: any kind of error in principle, a setup error included;
small models judge little better than chance, and a judge shares its model's blind spots.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from reasoner.graph import Ctx, Forward, Graph, NodeId
from reasoner.prompts import Templates
from reasoner.types import Completion, GenerationRequest, Message
from reasoner.verifiers.base import Steps, Verdict, Verifier, resolve

templates = Templates("reasoner.verifiers")
_VERDICT = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def verdict_of(text: str) -> bool | None:
    match = _VERDICT.match(text)
    return None if match is None else match[1].lower() == "yes"


def p_yes(completion: Completion) -> float | None:
    """P("yes") from the greedy verdict's first-token probability; None without log-probabilities
    or a readable verdict."""
    choice = completion.choices[0]
    said = verdict_of(choice.text)
    if said is None or not choice.token_logprobs:
        return None
    p = math.exp(choice.token_logprobs[0])
    return p if said else 1.0 - p


def share_yes(completion: Completion) -> float:
    """The share of sampled verdicts saying yes, among those that say either; 0.5 when none does."""
    said = [v for v in (verdict_of(c.text) for c in completion.choices) if v is not None]
    return sum(said) / len(said) if said else 0.5


class JudgeVerifier(Verifier):
    def __init__(self, model: str | None = None, *, per_step: bool = True, votes: int = 5, max_tokens: int = 4) -> None:
        if votes < 1:
            raise ValueError(f"a judge needs at least one vote, got votes={votes}")
        self.model = model
        self.per_step = per_step
        self.votes = votes
        self.max_tokens = max_tokens
        self.spec = "judge" if model is None else f"judge:{model}"

    def request(self, question: str, steps: Sequence[str], *, sampled: bool = False) -> GenerationRequest:
        name = "judge_step.j2" if self.per_step else "judge_solution.j2"
        user = templates.render(name, question=question, steps=steps)
        return GenerationRequest(
            messages=(Message(role="user", content=user),),
            temperature=1.0 if sampled else 0.0,
            n=self.votes if sampled else 1,
            max_tokens=self.max_tokens,
            logprobs=not sampled,
        )

    def verify(
        self, graph: Graph, question: str, steps: Steps, *, after: Sequence[NodeId] = (), label: str = "verify"
    ) -> NodeId:
        def start(ctx: Ctx) -> Forward | Verdict:
            lines = resolve(steps, ctx)
            if not lines:
                return Verdict(verifier=self.spec, steps=[], scores=[], per_step=self.per_step)
            # Each step is judged with the steps before it, all steps at once.
            shown = [lines[: i + 1] for i in range(len(lines))] if self.per_step else [lines]
            # A backend known to return no log-probabilities is asked for sampled votes at once.
            greedy = self.model is not None or ctx.backend.logprobs
            scored = [self._score(graph, question, s, f"{label}.judge{i}", greedy) for i, s in enumerate(shown)]

            def combine(ctx: Ctx) -> Verdict:
                return Verdict(verifier=self.spec, steps=lines, scores=[ctx[n] for n in scored], per_step=self.per_step)

            return Forward(graph.function(combine, after=scored, label=f"{label}.scores"))

        return graph.function(start, after=after, label=label)

    def _score(self, graph: Graph, question: str, steps: Sequence[str], label: str, greedy: bool) -> NodeId:
        """A node whose output is P(yes) for one judgement: greedy with log-probabilities, and
        sampled votes only where none came back."""
        if not greedy:
            votes = self._call(graph, self.request(question, steps, sampled=True), f"{label}.votes", after=())
            return graph.function(lambda c: share_yes(c[votes]), after=[votes], label=f"{label}.share")
        first = self._call(graph, self.request(question, steps), label, after=())

        def read(ctx: Ctx) -> float | Forward:
            p = p_yes(ctx[first])
            if p is not None:
                return p
            votes = self._call(graph, self.request(question, steps, sampled=True), f"{label}.votes", after=[first])
            return Forward(graph.function(lambda c: share_yes(c[votes]), after=[votes], label=f"{label}.share"))

        return graph.function(read, after=[first], label=f"{label}.p_yes")

    def _call(self, graph: Graph, request: GenerationRequest, label: str, after: Sequence[NodeId]) -> NodeId:
        if self.model is None:
            return graph.generate(request, after=after, label=label)
        return graph.tool(lambda ctx: self._ask_other(ctx, request), after=after, label=label)

    async def _ask_other(self, ctx: Ctx, request: GenerationRequest) -> Completion:
        from reasoner.backends.spec import open_backend

        assert self.model is not None
        backend = await open_backend(self.model)
        try:
            completion = await backend.generate(request)
        finally:
            await backend.aclose()
        # Recorded like a model node's, so the engine's usage counts the judge's calls too.
        record = ctx.graph.node(ctx.node)
        record.request = request.model_dump(mode="json", exclude_none=True)
        record.calls = completion.calls
        record.prompt_tokens = completion.prompt_tokens
        record.completion_tokens = completion.completion_tokens
        return completion


def judge(argument: str | None) -> JudgeVerifier:
    """`judge` or `judge:MODEL_SPEC`."""
    return JudgeVerifier(argument)
