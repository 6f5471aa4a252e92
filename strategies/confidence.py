"""Confidence from token log-probabilities: DeepConf (Fu et al. 2025, "Deep Think with Confidence").

A token's confidence here is its own log-probability (what every backend returns; the paper
averages the top-k candidates' log-probabilities, which few APIs return). A trace's group
confidence is the mean over a sliding window of `window` tokens; its confidence is the lowest
group confidence (a trace that lost its way somewhere), and its tail confidence the mean of its
last `window` tokens.

Offline: keep the most confident share of the traces and vote with each weighted by exp(its
confidence). Online (`deepconf`): a few warm-up traces are drawn whole and set a threshold, a
low percentile of their confidences; every later trace is streamed and cut as soon as its group
confidence falls below the threshold (leaving the stream cancels the request, so a cut trace costs
only the tokens it got to), and sampling stops once the vote is settled (the Dirichlet rule of
reasoner.strategies.stopping over the traces kept).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from reasoner.answers import extract_answer
from reasoner.backends.base import Backend
from reasoner.types import Completion, GenerationRequest
from reasoner.strategies.stopping import leader_holds


class GroupMonitor:
    """Sliding-window group confidence of a trace, fed as its tokens arrive."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self._last: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self.tokens = 0
        self.lowest: float | None = None  # the lowest full-window mean so far

    def add(self, logprob: float) -> float | None:
        """Take one token; the group confidence once a full window is in, else None."""
        if len(self._last) == self.window:
            self._sum -= self._last[0]
        self._last.append(logprob)
        self._sum += logprob
        self.tokens += 1
        if len(self._last) < self.window:
            return None
        group = self._sum / self.window
        self.lowest = group if self.lowest is None else min(self.lowest, group)
        return group

    @property
    def confidence(self) -> float:
        """The trace's confidence: its lowest group, or the mean of a trace shorter than a window."""
        if self.lowest is not None:
            return self.lowest
        return self._sum / len(self._last) if self._last else -math.inf


def trace_confidence(logprobs: Sequence[float], window: int) -> float:
    monitor = GroupMonitor(window)
    for lp in logprobs:
        monitor.add(lp)
    return monitor.confidence


def tail_confidence(logprobs: Sequence[float], window: int) -> float:
    tail = logprobs[-window:]
    return sum(tail) / len(tail) if tail else -math.inf


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Trace:
    answer: str | None
    confidence: float
    tokens: int
    cut: bool = False  # stopped while generated: no vote (`tokens` is then the cut point)
    text: str = ""


def weighted_vote(traces: Sequence[Trace]) -> tuple[str | None, dict[str, float]]:
    """The answer with the largest summed exp(confidence) among uncut traces with an answer."""
    scores: dict[str, float] = {}
    for t in traces:
        if not t.cut and t.answer is not None:
            scores[t.answer] = scores.get(t.answer, 0.0) + math.exp(t.confidence)
    if not scores:
        return None, {}
    return max(scores, key=lambda a: scores[a]), scores


def offline_filter(traces: Sequence[Trace], keep: float) -> list[Trace]:
    """The most confident `keep` share (0..1] of the traces, at least one."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    ranked = sorted(traces, key=lambda t: t.confidence, reverse=True)
    return ranked[: max(1, round(keep * len(ranked)))]


class DeepConfSettings(BaseModel):
    samples: int = Field(16, ge=1, le=128, description="most traces per question, warm-up included")
    warmup: int = Field(4, ge=1, description="traces drawn whole to set the threshold")
    keep: float = Field(90.0, gt=0, lt=100, description="percent of warm-up confidences above the cut threshold")
    window: int = Field(32, ge=1, description="tokens in a sliding group")
    parallel: int = Field(2, ge=1, description="traces streamed at once after the warm-up")
    settle: float = Field(0.85, gt=0.5, le=1.0, description="stop once P(the vote leader stays ahead at the cap) reaches this")


@dataclass
class DeepConfResult:
    answer: str | None
    traces: list[Trace] = field(default_factory=list)
    threshold: float = -math.inf
    prompt_tokens: int = 0
    requests: int = 0
    fallback: str | None = None  # why confidence could not be used, when it could not

    @property
    def generated_tokens(self) -> int:
        return sum(t.tokens for t in self.traces)


def _settled(traces: Sequence[Trace], cap: int, threshold: float) -> bool:
    votes = Counter(t.answer for t in traces if not t.cut and t.answer is not None)
    if not votes:
        return False
    counts = tuple(c for _, c in votes.most_common())
    return leader_holds(counts, max(0, cap - len(traces))) >= threshold


async def deepconf(backend: Backend, request: GenerationRequest, settings: DeepConfSettings) -> DeepConfResult:
    """Online DeepConf for one question: `request` is one sample's request (its seed, if any, is
    the first trace's; trace i gets seed + i). The backend must return token log-probabilities."""
    request = request.model_copy(update={"logprobs": True, "n": 1})
    seed = request.seed or 0
    result = DeepConfResult(answer=None)
    warm = await backend.generate(request.model_copy(update={"n": min(settings.warmup, settings.samples), "seed": seed}))
    result.requests, result.prompt_tokens = 1, warm.prompt_tokens
    if any(choice.token_logprobs is None for choice in warm.choices):
        return await _without_confidence(backend, request, settings, warm, result)
    for choice in warm.choices:
        assert choice.token_logprobs is not None
        confidence = trace_confidence(choice.token_logprobs, settings.window)
        result.traces.append(Trace(extract_answer(choice.text), confidence, len(choice.token_logprobs), text=choice.text))
    result.threshold = percentile([t.confidence for t in result.traces], 100 - settings.keep)
    for t in result.traces:
        t.cut = t.confidence < result.threshold  # the least confident warm-up traces do not vote either

    live: dict[int, GroupMonitor] = {}  # the traces being streamed, for the tokens of any left running

    async def one(index: int) -> Trace:
        monitor, text = GroupMonitor(settings.window), []
        live[index] = monitor
        stream = backend.stream(request.model_copy(update={"seed": seed + index}))
        try:
            async for chunk in stream:
                if chunk.completion is not None:
                    result.prompt_tokens += chunk.completion.prompt_tokens
                    break
                text.append(chunk.text)
                for lp in chunk.token_logprobs or ():
                    group = monitor.add(lp)
                    if group is not None and group < result.threshold:
                        return Trace(None, group, monitor.tokens, cut=True, text="".join(text))
        finally:
            await stream.aclose()  # cancels the request when the trace was cut
            del live[index]
        said = "".join(text)
        return Trace(extract_answer(said), monitor.confidence, monitor.tokens, text=said)

    next_index = len(result.traces)
    running: set[asyncio.Task[Trace]] = set()
    try:
        while not _settled(result.traces, settings.samples, settings.settle):
            while len(running) < settings.parallel and next_index < settings.samples:
                running.add(asyncio.create_task(one(next_index)))
                next_index += 1
                result.requests += 1
            if not running:
                break
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            result.traces += [task.result() for task in done]
    finally:
        # Traces still streaming when the vote settled are cancelled; what they generated counts.
        result.traces += [Trace(None, m.confidence, m.tokens, cut=True) for m in live.values()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    result.answer, _ = weighted_vote(result.traces)
    if result.answer is None:  # every trace was cut: the plain vote of the warm-up traces
        answers = Counter(t.answer for t in result.traces if t.answer is not None)
        result.answer = answers.most_common(1)[0][0] if answers else None
    return result


async def _without_confidence(
    backend: Backend, request: GenerationRequest, settings: DeepConfSettings, warm: Completion, result: DeepConfResult
) -> DeepConfResult:
    """A backend that returns no log-probabilities (llama.cpp's own server without `logits_all`,
    say) leaves nothing to measure: every trace is drawn whole and votes, as in self-consistency."""
    choices, seed = list(warm.choices), request.seed or 0
    tokens = [c.completion_tokens or warm.completion_tokens // max(1, len(warm.choices)) for c in choices]
    if settings.samples > len(choices):
        more = await backend.generate(request.model_copy(update={"n": settings.samples - len(choices), "seed": seed + len(choices)}))
        result.requests += 1
        result.prompt_tokens += more.prompt_tokens
        tokens += [c.completion_tokens or more.completion_tokens // max(1, len(more.choices)) for c in more.choices]
        choices += more.choices
    result.traces = [Trace(extract_answer(c.text), 0.0, n, text=c.text) for c, n in zip(choices, tokens)]
    result.fallback = f"backend {backend.name!r} returned no token log-probabilities: every trace voted, none was cut"
    result.answer, _ = weighted_vote(result.traces)
    return result
