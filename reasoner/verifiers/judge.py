"""The LLM judge: a model is asked whether a step (or a whole solution) is correct.

The score is P("yes"). Where the backend returns log-probabilities, one greedy verdict gives it:
the first token's probability p, read as p for a "Yes" and 1 - p for a "No" (only the chosen
token's probability comes back, so the rest of the mass is taken to be the other verdict's).
Where it returns none, `votes` verdicts are sampled at temperature 1 and the score is the share
of them saying yes. `judge` asks the model that generates; `judge:MODEL_SPEC` asks another
(opened from the spec once per event loop, `reasoner.backends.others`; its calls are recorded on
their nodes, and its votes go as single requests where it ignores n).
The verifier is a function node; each judgement is a node inside it (`verify.judge{i}`, a model
node, or a tool node for another model), and its sampled votes, where needed, `verify.judge{i}.votes`.

What it catches depends on the judge: any kind of error in principle, a setup error included;
small models judge little better than chance, and a judge shares its model's blind spots.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from reasoner.backends.others import generate_on
from reasoner.prompts import Templates
from reasoner.run import Run
from reasoner.types import Completion, GenerationRequest, Message
from reasoner.verdict import Verdict, Verifier, lines

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
    kind = "function"  # its model calls are nodes inside its own

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

    async def verify(self, run: Run, question: str, steps: Sequence[str]) -> Verdict:
        found = lines(steps)
        if not found:
            return Verdict(verifier=self.spec, steps=[], scores=[], per_step=self.per_step)
        # Each step is judged with the steps before it, all judgements at once.
        shown = [found[: i + 1] for i in range(len(found))] if self.per_step else [found]
        # A backend known to return no log-probabilities is asked for sampled votes at once.
        greedy = self.model is not None or run.backend.logprobs
        scores = await run.gather(*(self._score(run, question, s, f"verify.judge{i}", greedy) for i, s in enumerate(shown)))
        # Not tolerant: a failed judgement fails the verdict, so every result here is a score.
        return Verdict(verifier=self.spec, steps=found, scores=scores, per_step=self.per_step)  # type: ignore[arg-type]

    async def _score(self, run: Run, question: str, steps: Sequence[str], label: str, greedy: bool) -> float:
        """P(yes) for one judgement: greedy with log-probabilities, and sampled votes only where
        none came back."""
        if greedy:
            p = p_yes(await self._call(run, self.request(question, steps), label))
            if p is not None:
                return p
        return share_yes(await self._call(run, self.request(question, steps, sampled=True), f"{label}.votes"))

    async def _call(self, run: Run, request: GenerationRequest, label: str) -> Completion:
        if self.model is None:
            return await run.generate(request, label=label)
        # Another server's call is a tool node, billed and its request recorded like a model node's.
        return await run.tool(generate_on, self.model, request, label=label, request=request)


def judge(argument: str | None) -> JudgeVerifier:
    """`judge` or `judge:MODEL_SPEC`."""
    return JudgeVerifier(argument)
