"""Mixture of agents (Wang et al. 2024, "Mixture-of-Agents Enhances Large Language Model
Capabilities"), as optillm's `moa` offers it.

Proposers answer the question; an aggregator model reads their answers and writes the final one.
The proposers are `models` (model specs, as `--model` takes them; `self` is the model the
strategy runs on), each drawing `samples` answers in one request with n, so one model's samples
(`models=self`, the default) are the one-model mixture optillm runs. With `layers` above 1, each
further layer's proposers are shown the previous layer's answers with the synthesis prompt and
answer again (the paper's layered mixture); the aggregator synthesises the last layer's.

How another model is reached: as the `judge:MODEL_SPEC` verifier does, through `run.tool` with a
backend opened from its spec once per event loop (`reasoner.backends.others`, so a run of many
questions connects once). The call is a tool node of the
graph with its request recorded and its tokens billed on it, so the trace shows every proposal
and the solution's usage counts every model; `self` goes through the engine (`run.generate`), so
its samples merge into one request with n as usual. A routing backend keyed by a request's
`model` field would need that field in the core request type and every backend to honour it;
this needs nothing below the strategies layer. `details["costs"]` gives each model's calls and
tokens, the aggregator's included.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from reasoner.backends.others import generate_on
from reasoner.backends.spec import SPEC_HELP
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer, Completion, GenerationRequest, Usage
from reasoner.strategies.backtrack import said
from reasoner.strategies.common import templates
from reasoner.strategies.stepwise import Steps, lines_of, step_request, succeeded

SELF = "self"
_SPEC_STARTS = ("http://", "https://", "openai:", "local:", "llamacpp:", "vllm:")


def model_spec(spec: str) -> str:
    """`self` or a model spec `open_backend` knows, else an error naming it."""
    spec = spec.strip()
    if spec in (SELF, "local") or (spec.startswith(_SPEC_STARTS) and spec.partition(":")[2].strip("/")):
        return spec
    raise ValueError(f"unknown model spec {spec!r}: use 'self' (the model the strategy runs on) or one of the {SPEC_HELP}")


def _split(value: object) -> object:
    # `;`, as commas already part variant options (and an http spec's replicas).
    return [s for s in value.split(";") if s.strip()] if isinstance(value, str) else value


ModelSpecs = Annotated[list[Annotated[str, AfterValidator(model_spec)]], BeforeValidator(_split)]


class Mixture(Strategy):
    name = "mixture"
    summary = "Mixture of agents: several models (or one model's samples) answer, then an aggregator model writes the final answer."

    models: ModelSpecs = Field(
        [SELF], min_length=1, description="proposer models: model specs ('self': the strategy's own model), ';'-separated"
    )
    samples: int = Field(3, ge=1, le=16, description="answers per proposer model (one request with n)")
    aggregator: Annotated[str, AfterValidator(model_spec)] = Field(SELF, description="the model spec that writes the final answer")
    layers: int = Field(1, ge=1, le=4, description="proposer layers; each after the first answers again, shown the last layer's answers")
    k: int = Field(4, ge=0, le=8, description="exemplars in the proposers' first prompt")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature of the proposers")

    async def forward(self, run: Run, question: str) -> Answer:
        costs: dict[str, Usage] = defaultdict(Usage)
        proposals: list[dict[str, Any]] = []
        shown: list[Steps] = []
        for layer in range(self.layers):
            scope = run.scope(f"layer{layer}")
            asked = [self.ask(scope, costs, spec, self.proposal(question, shown, layer), f"propose.m{i}") for i, spec in enumerate(self.models)]
            results = await run.gather(*asked, tolerate=True)
            succeeded(results, "proposer")  # every proposer failing fails the question, naming why
            replies = [(spec, r) for spec, r in zip(self.models, results) if isinstance(r, Completion)]
            answered = [(spec, tuple(lines_of(c.text))) for spec, reply in replies for c in reply.choices]
            proposals += [{"layer": layer, "model": spec, "answer": said(s) if s else None} for spec, s in answered]
            shown = [s for _, s in answered if s] or shown
        if not shown:
            return Answer(answer=None, text="", details={"proposals": proposals, "costs": _dump(costs), "why": "no proposer wrote a solution"})
        prompt = templates.render("mixture/synthesize.j2", question=question, responses=shown)
        request = self.turn(prompt, temperature=0.0, stop=("\nQ:", "\n\n"))
        final = tuple(lines_of((await self.ask(run, costs, self.aggregator, request, "synthesize")).text))
        return Answer(
            answer=said(final) if final else None,
            text="\n".join(final),
            details={"proposals": proposals, "aggregator": self.aggregator, "models": list(self.models), "costs": _dump(costs)},
        )

    def proposal(self, question: str, shown: list[Steps], layer: int) -> GenerationRequest:
        if layer == 0 or not shown:
            return step_request(self, question, (), k=self.k, n=self.samples, whole=True)
        prompt = templates.render("mixture/synthesize.j2", question=question, responses=shown)
        seed = None if self.seed is None else self.seed + layer
        return self.turn(prompt, n=self.samples, seed=seed, stop=("\nQ:", "\n\n"))

    async def ask(self, run: Run, costs: dict[str, Usage], spec: str, request: GenerationRequest, label: str) -> Completion:
        """`request` to model `spec`: through the engine for `self`, else a billed tool node."""
        if spec == SELF:
            reply = await run.generate(request, label=label)
        else:
            reply = await run.tool(generate_on, spec, request, label=label, request=request)
        costs[spec] += Usage(calls=reply.calls, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
        return reply


def _dump(costs: dict[str, Usage]) -> dict[str, dict[str, int]]:
    return {spec: {**u.model_dump(exclude={"latency_s"}), "total_tokens": u.total_tokens} for spec, u in costs.items()}
