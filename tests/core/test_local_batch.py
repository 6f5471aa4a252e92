"""Batched sampling and streaming on the embedded model: n distinct samples in one batch that
repeat for the same request, whatever ran before; the sampler itself; streams and their cancelling."""

from __future__ import annotations

import numpy as np
import pytest

from reasoner.types import GenerationRequest

PROMPT = "Q: Tom has 3 apples and buys 4 more. How many apples does he have?\nA:"


def texts(completion) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.text for c in completion.choices]


# -- the sampler, without a model ----------------------------------------------------------------


def choose(sampler, logits: list[float]) -> int:  # type: ignore[no-untyped-def]
    """The token a sampler chain picks from these logits (llama.cpp's own apply, no model)."""
    import ctypes

    import llama_cpp

    data = (llama_cpp.llama_token_data * len(logits))(*(llama_cpp.llama_token_data(i, v, 0.0) for i, v in enumerate(logits)))
    array = llama_cpp.llama_token_data_array(data=data, size=len(logits), selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(sampler.sampler, ctypes.byref(array))
    return int(array.data[array.selected].id)


def test_sampler_greedy_top_p_and_min_p() -> None:
    pytest.importorskip("llama_cpp")
    from reasoner.backends.local_batch import make_sampler

    logits = [0.0, 3.0, 2.9, -1.0, 1.0]
    assert choose(make_sampler(0.0, 1.0, 0), logits) == 1  # greedy
    assert {choose(make_sampler(1.0, 0.01, seed), logits) for seed in range(50)} == {1}  # top-p keeps the best alone
    # min-p 0.05 drops tokens under 5% of the best's probability: e^-4 (token 3) is 1.8%.
    sampler = make_sampler(1.5, 1.0, 0)
    drawn = {choose(sampler, logits) for _ in range(400)}
    assert 3 not in drawn and {1, 2, 4} <= drawn


def test_sampler_is_reproducible_per_seed() -> None:
    pytest.importorskip("llama_cpp")
    from reasoner.backends.local_batch import make_sampler

    logits = [float(v) for v in np.linspace(0, 2, 100)]
    a, b, other = make_sampler(1.0, 0.95, 7), make_sampler(1.0, 0.95, 7), make_sampler(1.0, 0.95, 8)
    run_a = [choose(a, logits) for _ in range(20)]
    assert run_a == [choose(b, logits) for _ in range(20)]
    assert run_a != [choose(other, logits) for _ in range(20)]
    assert len(set(run_a)) > 5  # a draw, not a fixed pick


# -- the real model --------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_batched_sampler_is_the_sequential_paths_sampler(local_backend) -> None:
    # Both paths sample alike: for the same settings and seed, the batched path's chain picks what
    # llama-cpp-python's own chain (the sequential path's) picks, draw after draw. Its numpy
    # sampler of before drew other and shorter samples (32.6 tokens against 39.1 on average).
    from reasoner.backends.local_batch import make_sampler

    llm = local_backend.llm
    logits = [float(v) for v in np.random.default_rng(0).normal(0, 2, 300)]
    for temperature, top_p, seed in ((0.7, 1.0, 1), (1.0, 0.9, 42), (0.0, 1.0, 3)):
        llm.set_seed(seed)
        theirs = llm._init_sampler(top_k=40, top_p=top_p, min_p=0.05, typical_p=1.0, temp=temperature)
        ours = make_sampler(temperature, top_p, seed)
        assert [choose(ours, logits) for _ in range(30)] == [choose(theirs, logits) for _ in range(30)]



@pytest.mark.slow
async def test_batched_samples_are_distinct_and_repeat_for_the_same_request(local_backend) -> None:
    assert local_backend.batched
    request = GenerationRequest(prompt=PROMPT, n=6, temperature=0.9, seed=11, max_tokens=24, logprobs=True, stop=("\nQ:",))
    first = await local_backend.generate(request)
    assert len(set(texts(first))) >= 4  # six seeds, six samples: only a chance repeat of a short answer
    for choice in first.choices:
        assert choice.completion_tokens and choice.finish_reason in ("stop", "length")
        if local_backend.logprobs:
            assert choice.token_logprobs and len(choice.token_logprobs) == choice.completion_tokens
    # Another prompt in between, then the same request: the same samples.
    await local_backend.generate(request.model_copy(update={"prompt": "Q: What is 12 times 7?\nA:", "n": 3, "seed": 1}))
    assert texts(await local_backend.generate(request)) == texts(first)
    # Another seed, other samples.
    assert texts(await local_backend.generate(request.model_copy(update={"seed": 12}))) != texts(first)


@pytest.mark.slow
async def test_greedy_batched_samples_agree() -> None:
    from reasoner.backends.local import LlamaCppBackend

    backend = LlamaCppBackend(n_ctx=2048, logprobs=True)
    request = GenerationRequest(prompt=PROMPT, n=3, temperature=0.0, max_tokens=16, logprobs=True)
    completion = await backend.generate(request)
    assert len(set(texts(completion))) == 1  # the same logits, the same argmax, in every sequence
    lps = completion.choices[0].token_logprobs
    assert lps and all(lp <= 0 for lp in lps) and len(lps) == completion.choices[0].completion_tokens


@pytest.mark.slow
async def test_more_samples_than_fit_the_cache_are_decoded_in_groups() -> None:
    from reasoner.backends.local import LlamaCppBackend
    from reasoner.backends.local_batch import MAX_SEQUENCES

    backend = LlamaCppBackend(n_ctx=2048)
    # 400 tokens each: 4 fit beside the ~50-token prompt in 2,048 cells, so 7 samples are 4 + 3.
    request = GenerationRequest(prompt=PROMPT, n=7, temperature=1.0, seed=3, max_tokens=400, stop=(" ", "\n"))
    first = await backend.generate(request)
    assert backend.llm._reasoner_batch.limits(first.prompt_tokens, 400) == (400, 4) and 7 <= MAX_SEQUENCES
    assert len(first.choices) == 7
    assert texts(await backend.generate(request)) == texts(first)


@pytest.mark.slow
async def test_sequential_mode_is_kept_for_comparison() -> None:
    from reasoner.backends.local import LlamaCppBackend

    backend = LlamaCppBackend(n_ctx=2048, batched=False)
    request = GenerationRequest(prompt=PROMPT, n=2, temperature=0.9, seed=11, max_tokens=12)
    first = await backend.generate(request)
    assert texts(await backend.generate(request)) == texts(first)


@pytest.mark.slow
async def test_stream_gives_the_batched_samples_and_leaving_cancels(local_backend, monkeypatch: pytest.MonkeyPatch) -> None:
    from reasoner.backends import local_batch

    request = GenerationRequest(prompt=PROMPT, n=2, temperature=0.9, seed=11, max_tokens=24, stop=("\nQ:",))
    chunks = [chunk async for chunk in local_backend.stream(request)]
    final = chunks[-1].completion
    assert final is not None and texts(final) == texts(await local_backend.generate(request))
    for index in (0, 1):
        assert "".join(c.text for c in chunks[:-1] if c.index == index) == final.choices[index].text
    assert len([c for c in chunks[:-1] if c.index == 0]) > 1  # text came as it was decoded

    # What the worker's batched decoder does, in order (appended from the worker thread): each
    # request's start and how it ended, by its max_tokens; a "token" per sampled token.
    events: list[tuple[str, int]] = []
    run, take = local_batch.BatchDecoder.run, local_batch.BatchDecoder._take

    def watched_run(self, tokens, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        events.append(("start", request.max_tokens))
        try:
            seqs = run(self, tokens, request, *args, **kwargs)
        except local_batch.Cancelled:
            events.append(("cancelled", request.max_tokens))
            raise
        events.append(("done", request.max_tokens))
        return seqs

    def watched_take(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        events.append(("token", 0))
        return take(self, *args, **kwargs)

    monkeypatch.setattr(local_batch.BatchDecoder, "run", watched_run)
    monkeypatch.setattr(local_batch.BatchDecoder, "_take", watched_take)

    long = GenerationRequest(prompt=PROMPT, temperature=1.0, seed=2, max_tokens=2000)
    seen = 0
    async for chunk in local_backend.stream(long):
        seen += len(chunk.text)
        if seen > 10:
            break
    # The worker is free again at once: the next request does not wait for 2,000 tokens.
    assert texts(await local_backend.generate(request)) == texts(final)
    # Leaving the stream cancelled its decode (not a stopwatch: CI machines are small and noisy):
    # it ended cancelled, short of its 2,000 tokens, and only then did the next request start.
    got = list(events)
    assert got[0] == ("start", 2000)
    end = next(i for i, (kind, _) in enumerate(got) if kind in ("cancelled", "done"))
    assert got[end] == ("cancelled", 2000), got[end]
    sampled = got[1:end]
    assert set(sampled) == {("token", 0)} and len(sampled) < 2000
    assert got[end + 1] == ("start", 24) and got[-1] == ("done", 24)


@pytest.mark.slow
async def test_a_single_sample_gets_log_probabilities_without_logits_all(local_backend) -> None:
    # The main context keeps only the last logits (logprobs=False); the batched decoder computes
    # each token's log-probability itself, so a request that asks for them gets them.
    assert not local_backend.logprobs
    request = GenerationRequest(prompt=PROMPT, temperature=0.0, max_tokens=8, logprobs=True)
    choice = (await local_backend.generate(request)).choices[0]
    assert choice.token_logprobs and len(choice.token_logprobs) == choice.completion_tokens
