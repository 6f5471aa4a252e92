"""Batched sampling on the embedded model: a request's n samples are decoded together.

The prompt is evaluated once into sequence 0 of a llama.cpp context of its own (up to
`MAX_SEQUENCES` sequences, one KV cache shared by all), copied to sequences 1..n-1 (a copy shares
the prompt's cache cells, it does not duplicate them), and every step decodes one token of each
unfinished sequence in a single batch. The prompt is prefilled once, not once per sample, and
a step is cheaper per token than a lone sequence's, though on a CPU not by much: llama.cpp's CPU
kernels are compute-bound for a model this small, and a step of 8 sequences costs about 5x a
step of one on the 2-core machines here (`python -m reasoner.bench.measure.batched_sampling --steps`).

Each sequence has a llama.cpp sampler chain of its own, built as llama-cpp-python builds the
sequential path's (top-k 40, typical 1.0, top-p, min-p 0.05, temperature, then a draw seeded with
the request's seed + the sample's index), so both paths sample alike and the choice runs in C, not
over a 49,152-entry numpy row per token. A request gives the same samples every time, whatever ran
before (the prompt cache is reused in the same fixed blocks as the sequential path). A seed's
sample draws from the same random stream as the sequential path's sample of that seed, yet may
differ from its first token on: the logits a batch computes differ slightly from a lone
sequence's (seen here: 0.02-0.05 in a token's log-probability), enough to move a draw that falls
near the edge between two tokens, and from there the samples follow other paths.

Everything here runs on the backend's worker thread.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reasoner.backends.base import BackendError
from reasoner.types import Choice, Completion, GenerationRequest

MAX_SEQUENCES = 16
TOP_K = 40  # llama-cpp-python's create_completion defaults, so both paths sample alike
MIN_P = 0.05
TYPICAL_P = 1.0
#: Called with (sample index, new text, log-probabilities of the tokens decoded since the last call).
Emit = Callable[[int, str, list[float]], None]


class Cancelled(Exception):
    """The request was cancelled while its batch was decoding."""


@dataclass
class Sequence:
    index: int
    sampler: Any  # llama_cpp._internals.LlamaSampler
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    emitted: int = 0  # characters of `text` already emitted
    pending: list[float] = field(default_factory=list)  # log-probabilities not yet emitted
    finish_reason: str | None = None


def _log_softmax_at(logits: np.ndarray, token: int) -> float:
    top = float(logits.max())
    return float(logits[token] - top - np.log(np.exp(logits - top).sum()))


def make_sampler(temperature: float, top_p: float, seed: int) -> Any:
    """A sampler chain as llama-cpp-python's create_completion builds one for these settings."""
    from llama_cpp import _internals

    sampler = _internals.LlamaSampler()
    if temperature <= 0:
        sampler.add_greedy()
        return sampler
    sampler.add_top_k(TOP_K)
    sampler.add_typical(TYPICAL_P, 1)
    sampler.add_top_p(top_p, 1)
    sampler.add_min_p(MIN_P, 1)
    sampler.add_temp(temperature)
    sampler.add_dist(seed & 0xFFFFFFFF)  # llama.cpp seeds are 32-bit
    return sampler


class BatchDecoder:
    """A second context on a loaded model, for decoding several sequences at once."""

    def __init__(self, llm: Any, n_ctx: int, n_threads: int, block: int, abort_callback: Any) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self.llm = llm
        self.block = block
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = block
        params.n_threads = params.n_threads_batch = n_threads
        params.n_seq_max = MAX_SEQUENCES
        params.kv_unified = True  # one cache for all sequences: they share the prompt's cells
        self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        if abort_callback is not None:
            llama_cpp.llama_set_abort_callback(self.ctx.ctx, abort_callback, None)
        self.n_ctx = n_ctx
        self.n_vocab = llm.n_vocab()
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        self.batch = llama_cpp.llama_batch_init(max(block, MAX_SEQUENCES), 0, MAX_SEQUENCES)
        self.cached: list[int] = []  # the prompt tokens held in whole blocks by sequence 0
        self._lib = llama_cpp

    def close(self) -> None:
        if self.batch is not None:
            self._lib.llama_batch_free(self.batch)
            self.batch = None
        self.ctx.close()

    def _decode(self, entries: list[tuple[int, int, int, bool]], cancel: Any) -> None:
        """Decode (token, position, sequence, wants logits) entries as one batch."""
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        code = self._lib.llama_decode(self.ctx.ctx, batch)
        if cancel.is_set():
            self.cached = []  # an aborted decode leaves the cache in an unknown state
            raise Cancelled()
        if code != 0:
            self.cached = []
            raise BackendError(f"llama.cpp could not decode a batch of {len(entries)} tokens (code {code}); is n_ctx too small?")

    def _logits(self, i: int) -> np.ndarray:
        """The logits of batch entry i, as a view (valid until the next decode)."""
        pointer = self._lib.llama_get_logits_ith(self.ctx.ctx, i)
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))

    def _prefill(self, tokens: list[int], cancel: Any) -> int:
        """Put the prompt into sequence 0 (reusing whole cached blocks) and return the batch index
        of its last token, whose logits the first samples are drawn from. Everything else in the
        cache is dropped first, so the new tokens land in the same cells whatever ran before."""
        common = self.llm.longest_token_prefix(self.cached, tokens)
        reuse = max(0, min(common, len(tokens) - 1)) // self.block * self.block
        self._lib.llama_memory_seq_rm(self.ctx.memory, -1, reuse, -1)
        self.cached = tokens[:reuse]
        last = -1
        for start in range(reuse, len(tokens), self.block):
            chunk = tokens[start : start + self.block]
            final = start + len(chunk) == len(tokens)
            self._decode([(t, start + j, 0, final and j == len(chunk) - 1) for j, t in enumerate(chunk)], cancel)
            last = len(chunk) - 1
        self.cached = tokens[: len(tokens) // self.block * self.block]
        return last

    def limits(self, prompt_tokens: int, max_tokens: int) -> tuple[int, int]:
        """(tokens a sample may have, sequences that fit in the cache together beside the prompt).
        As on the sequential path, a sample ends where the context does."""
        room = self.n_ctx - prompt_tokens
        if room < 1:
            raise BackendError(f"the prompt ({prompt_tokens} tokens) does not fit in n_ctx ({self.n_ctx})")
        length = min(max_tokens, room)
        return length, min(MAX_SEQUENCES, room // length)

    def run(
        self, tokens: list[int], request: GenerationRequest, base_seed: int, cancel: Any, emit: Emit | None = None
    ) -> list[Sequence]:
        """The request's n samples, decoded in groups that fit the cache."""
        done: list[Sequence] = []
        length, size = self.limits(len(tokens), request.max_tokens)
        for first in range(0, request.n, size):
            indices = range(first, min(request.n, first + size))
            seqs = [Sequence(i, make_sampler(request.temperature, request.top_p, base_seed + i)) for i in indices]
            try:
                done += self._group(tokens, seqs, request.model_copy(update={"max_tokens": length}), cancel, emit)
            finally:
                for s in seqs:
                    s.sampler.close()
        return done

    def _group(
        self, tokens: list[int], seqs: list[Sequence], request: GenerationRequest, cancel: Any, emit: Emit | None
    ) -> list[Sequence]:
        last = self._prefill(tokens, cancel)
        prompt = len(tokens)
        ctx, lib = self.ctx.ctx, self._lib
        self.fork(len(seqs))
        stops = list(request.stop or [])
        hold = max((len(s) for s in stops), default=1) - 1  # text that may still become a stop
        rows = {slot: last for slot in range(len(seqs))}  # each sequence's batch entry to sample from
        try:
            for step in range(request.max_tokens):
                entries = []
                for slot, s in enumerate(seqs):
                    if s.finish_reason is not None:
                        continue
                    token = lib.llama_sampler_sample(s.sampler.sampler, ctx, rows[slot])
                    if lib.llama_vocab_is_eog(self.vocab, token):
                        s.finish_reason = "stop"
                    else:
                        # Only asked-for log-probabilities are computed: a softmax over the vocabulary per token.
                        logprob = _log_softmax_at(self._logits(rows[slot]), token) if request.logprobs else 0.0
                        self._take(s, token, logprob, stops, request.max_tokens)
                        if s.finish_reason is None:
                            entries.append((token, prompt + step, slot, True))
                    if emit is not None:
                        safe = len(s.text) if s.finish_reason else max(s.emitted, len(s.text) - hold)
                        if safe > s.emitted or s.pending:
                            emit(s.index, s.text[s.emitted : safe], s.pending)
                        s.emitted, s.pending = safe, []
                if not entries:
                    break
                self._decode(entries, cancel)
                rows = {slot: i for i, (_, _, slot, _) in enumerate(entries)}
            for s in seqs:
                s.finish_reason = s.finish_reason or "length"
        finally:
            self.release(len(seqs), prompt)
        return seqs

    def fork(self, sequences: int) -> None:
        """Share the prompt in sequence 0 with sequences 1..sequences-1."""
        for slot in range(1, sequences):
            self._lib.llama_memory_seq_cp(self.ctx.memory, 0, slot, -1, -1)

    def release(self, sequences: int, prompt: int) -> None:
        """Drop every sample's own tokens; the prompt stays cached in sequence 0."""
        for slot in range(1, sequences):
            self._lib.llama_memory_seq_rm(self.ctx.memory, slot, -1, -1)
        self._lib.llama_memory_seq_rm(self.ctx.memory, 0, prompt, -1)

    def _take(self, s: Sequence, token: int, logprob: float, stops: list[str], max_tokens: int) -> None:
        s.tokens.append(token)
        s.logprobs.append(logprob)
        s.pending.append(logprob)
        s.text = self.llm.detokenize(s.tokens).decode("utf-8", "ignore")
        cut = min((i for i in (s.text.find(x) for x in stops) if i >= 0), default=-1)
        if cut >= 0:
            s.text, s.finish_reason = s.text[:cut], "stop"
        elif len(s.tokens) == max_tokens:
            s.finish_reason = "length"


def completion_of(seqs: list[Sequence], request: GenerationRequest, prompt_tokens: int, seconds: float, model: str) -> Completion:
    choices = [
        Choice(
            text=s.text,
            finish_reason=s.finish_reason,
            token_logprobs=s.logprobs if request.logprobs else None,
            completion_tokens=len(s.tokens),
        )
        for s in seqs
    ]
    return Completion(
        choices=choices,
        prompt_tokens=prompt_tokens,
        completion_tokens=sum(c.completion_tokens or 0 for c in choices),
        latency_s=seconds,
        model=model,
    )
