"""DeepConf as a strategy (Fu et al. 2025, "Deep Think with Confidence"): self-consistency whose
traces are cut while they are generated once their confidence drops, voting by confidence.

The few-shot chain-of-thought prompt is sampled as in self-consistency, with token
log-probabilities. `warmup` traces are drawn whole (one request with n=warmup); the `100 - keep`th
percentile of their confidences (lowest mean log-probability over a sliding group of `window`
tokens) is the threshold. Every later trace is streamed, `parallel` at a time, and left as soon as
its group confidence falls below it (leaving the stream cancels the request); sampling stops once
the Dirichlet rule says the leader among the kept traces stays ahead up to `samples` with
probability `settle`. The answer is the vote of the kept traces, each weighted by exp(confidence).
The mechanics are `reasoner.strategies.confidence.deepconf`.

Streaming happens inside one graph node ("deepconf"), so that node's output records every trace:
its text, tokens generated (for a cut trace, the token it was cut at), confidence and whether it
was cut, with the threshold. Its requests and tokens are added to the solution's usage. The node
needs the backend, which `solve` hands it: DeepConf runs as the outer strategy, not inside another.
The backend must return token log-probabilities and stream them (HTTP, vLLM, embedded, simulated).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from pydantic import Field

from reasoner.backends.base import Backend
from reasoner.graph import Ctx, Graph, NodeId
from reasoner.strategy import NodeListener, Strategy
from reasoner.types import Answer, Solution, Usage
from reasoner.strategies.common import inner_strategy
from reasoner.strategies.confidence import DeepConfSettings, deepconf

# The backend of the solve in progress (a context variable: concurrent solves each see their own).
_BACKEND: ContextVar[Backend | None] = ContextVar("deepconf_backend", default=None)
_USAGE = "deepconf_usage"  # where the node leaves its usage for `solve`


class DeepConf(Strategy, DeepConfSettings):
    """The online run's settings (samples, warmup, keep, window, parallel, settle) are
    `DeepConfSettings`' fields, so the strategy and `confidence.deepconf` cannot drift apart."""

    name = "deepconf"
    summary = "Self-consistency with traces cut while generated once their confidence drops, and a confidence-weighted vote."

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    k: int = Field(8, ge=0, le=8, description="few-shot exemplars in the prompt")

    def settings_for_run(self) -> DeepConfSettings:
        return DeepConfSettings(**self.model_dump(include=set(DeepConfSettings.model_fields)))

    def build(self, graph: Graph, question: str) -> NodeId:
        inner = inner_strategy(self, "few-shot-cot", k=self.k, logprobs=True)
        request = inner.request(inner.prompt(question), stop=("\nQ:", "\n\n\n"))  # type: ignore[attr-defined]

        async def run(ctx: Ctx) -> Answer:
            backend = _BACKEND.get()
            if backend is None:
                raise RuntimeError("deepconf streams from the backend itself: run it with DeepConf.solve, not inside another strategy")
            result = await deepconf(backend, request, self.settings_for_run())
            kept = [t for t in result.traces if not t.cut]
            winner = next((t for t in kept if t.answer == result.answer), None)
            traces = [
                {"answer": t.answer, "confidence": round(t.confidence, 6), "tokens": t.tokens, "cut": t.cut, "text": t.text}
                for t in result.traces
            ]
            details: dict[str, Any] = {
                "traces": traces, "threshold": round(result.threshold, 6), "samples_drawn": len(result.traces),
                "samples_cap": self.samples, "cut_traces": sum(t.cut for t in result.traces),
                "generated_tokens": result.generated_tokens,
                "votes": {a: sum(t.answer == a for t in kept) for a in dict.fromkeys(t.answer for t in kept if t.answer)},
                _USAGE: {"calls": result.requests, "prompt_tokens": result.prompt_tokens, "completion_tokens": result.generated_tokens},
            }
            if result.fallback is not None:  # the run's report counts these as self-consistency
                details.update(fallback="self-consistency", fallback_reason=result.fallback)
            agreement = details["votes"].get(result.answer, 0) / len(kept) if kept else 0.0
            return Answer(answer=result.answer, text=winner.text if winner else "", score=agreement, details=details)

        return graph.function(run, label="deepconf")

    async def solve(self, question: str, backend: Backend, *, on_node: NodeListener | None = None) -> Solution:
        token = _BACKEND.set(backend)
        try:
            solution = await super().solve(question, backend, on_node=on_node)
        finally:
            _BACKEND.reset(token)
        used = solution.details.pop(_USAGE, None)
        if used is not None:  # the engine saw no model call: the node streamed them itself
            solution.usage = solution.usage + Usage(**used)
        return solution
