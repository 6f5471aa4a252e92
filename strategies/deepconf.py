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

Streaming happens inside one tool node ("stream"), whose requests and tokens are billed on it, so
they count in the solution's usage like any model call's; the answer (the "deepconf" node's
output) records every trace: its text, tokens generated (for a cut trace, the token it was cut at),
confidence and whether it was cut, with the threshold. The node is given the backend itself
(`run.online`), so DeepConf runs as the outer strategy or inside another. The backend must return
token log-probabilities and stream them (HTTP, vLLM, embedded, simulated).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

from reasoner.backends.base import Backend
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer, GenerationRequest, Usage
from reasoner.strategies.common import inner_strategy
from reasoner.strategies.confidence import DeepConfResult, DeepConfSettings, deepconf

class Streamed(BaseModel):
    """The online run as the stream node's output: what it cost (`usage`, which the node is
    billed) and its outline; the traces themselves are the answer's details, recorded once."""

    usage: Usage
    threshold: float
    traces: int
    cut: int
    _result: DeepConfResult = PrivateAttr()

    @classmethod
    def of(cls, result: DeepConfResult) -> Streamed:
        usage = Usage(calls=result.requests, prompt_tokens=result.prompt_tokens, completion_tokens=result.generated_tokens)
        streamed = cls(usage=usage, threshold=result.threshold, traces=len(result.traces), cut=sum(t.cut for t in result.traces))
        streamed._result = result
        return streamed

    @property
    def result(self) -> DeepConfResult:
        return self._result


class DeepConf(Strategy, DeepConfSettings):
    """The online run's settings (samples, warmup, keep, window, parallel, settle) are
    `DeepConfSettings`' fields, so the strategy and `confidence.deepconf` cannot drift apart."""

    name = "deepconf"
    summary = "Self-consistency with traces cut while generated once their confidence drops, and a confidence-weighted vote."

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    k: int = Field(8, ge=0, le=8, description="few-shot exemplars in the prompt")

    def settings_for_run(self) -> DeepConfSettings:
        return DeepConfSettings(**self.model_dump(include=set(DeepConfSettings.model_fields)))

    async def forward(self, run: Run, question: str) -> Answer:
        inner = inner_strategy(self, "few-shot-cot", k=self.k, logprobs=True)
        request = inner.request(inner.prompt(question), stop=("\nQ:", "\n\n\n"))  # type: ignore[attr-defined]
        online = await run.online(lambda backend: self.stream(backend, request), label="stream", request=request)
        result = online.result
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
        }
        if result.fallback is not None:  # the run's report counts these as self-consistency
            details.update(fallback="self-consistency", fallback_reason=result.fallback)
        agreement = details["votes"].get(result.answer, 0) / len(kept) if kept else 0.0
        return Answer(answer=result.answer, text=winner.text if winner else "", score=agreement, details=details)

    async def stream(self, backend: Backend, request: GenerationRequest) -> Streamed:
        """Warm-up, threshold and the streamed traces, from the backend itself (not the engine)."""
        return Streamed.of(await deepconf(backend, request, self.settings_for_run()))
