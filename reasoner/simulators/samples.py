"""A simulated model for the sampling benchmarks: questions that differ in difficulty, samples
whose token log-probabilities say something about whether they are right, served in memory.

Question q has a gold number and a per-sample accuracy p drawn from Beta(0.6, 0.4) (mean 0.6,
U-shaped: most questions are nearly always or nearly never solved), fixed by (seed, q). A sample is
right with probability p, else one of three wrong values with shares 50% / 30% / 20% of 1 - p.

A sample is a deterministic function of (seed, question, sample number), and the sample number is
the request's seed plus the choice index, so every method sees the same stream of samples.

Token log-probabilities (DeepConf's signal): a sample is `length` tokens (120-280), each token's
log-probability -Exp(mean 0.3). A low-confidence stretch of 48 tokens whose log-probabilities are
-Exp(mean 2.0) starts at a uniform position in 40% of right samples and 70% of wrong ones.

Served by `SimulatedBackend`, a `Backend` in this process: the real strategies and engine run on
it, without HTTP, which on a 2-core machine would take hours for 1,319 questions x 40 samples.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache

from reasoner.backends.base import Backend
from reasoner.types import Choice, Completion, GenerationRequest, StreamChunk

QUESTION_ID = re.compile(r"Question #(\d+)")
WRONG_SHARES = (0.5, 0.3, 0.2)
STRETCH_TOKENS = 48
STRETCH_SHARE = {True: 0.4, False: 0.7}  # how often a right / wrong sample has a low stretch
CHUNK_TOKENS = 16  # tokens per streamed chunk


@dataclass(frozen=True)
class Sample:
    answer: int
    right: bool
    token_logprobs: tuple[float, ...]

    @property
    def text(self) -> str:
        # The filler stands for the reasoning; the answer line is the last 5 tokens.
        return "step " * (len(self.token_logprobs) - 5) + f"\nThe answer is {self.answer}."

    def tokens(self) -> list[str]:
        return ["step "] * (len(self.token_logprobs) - 5) + ["\nThe", " answer", " is", f" {self.answer}", "."]


@dataclass(frozen=True)
class SimulatedModel:
    seed: int = 0

    def gold(self, question: int) -> int:
        return random.Random(f"gold:{self.seed}:{question}").randint(20, 999)

    def p(self, question: int) -> float:
        return random.Random(f"p:{self.seed}:{question}").betavariate(0.6, 0.4)

    @lru_cache(maxsize=200_000)  # noqa: B019 - the model is small, immutable and process-long
    def sample(self, question: int, number: int) -> Sample:
        rng = random.Random(f"sample:{self.seed}:{question}:{number}")
        gold = self.gold(question)
        right = rng.random() < self.p(question)
        answer = gold if right else rng.choices([gold + 1, 2 * gold, gold - 10], weights=WRONG_SHARES)[0]
        length = rng.randint(120, 280)
        lps = [-rng.expovariate(1 / 0.3) for _ in range(length)]
        if rng.random() < STRETCH_SHARE[right]:
            start = rng.randrange(length - STRETCH_TOKENS)
            for i in range(start, start + STRETCH_TOKENS):
                lps[i] = -rng.expovariate(1 / 2.0)
        return Sample(answer, right, tuple(lps))

    @staticmethod
    def question_text(question: int) -> str:
        return f"Question #{question}: what number is the simulated model asked for?"


class SimulatedBackend(Backend):
    """`SimulatedModel` as a backend: n samples per request, token log-probabilities, streaming.
    Prompt tokens are counted as 4 characters a token."""

    name = "simulated"
    supports_n = True
    supports_streaming = True

    def __init__(self, model: SimulatedModel, max_in_flight: int = 256) -> None:
        super().__init__(max_in_flight)
        self.model = model

    def _samples(self, request: GenerationRequest) -> list[Sample]:
        found = QUESTION_ID.findall(request.as_text())
        if not found:
            raise ValueError("the simulated model needs 'Question #N' in the prompt")
        question = int(found[-1])  # few-shot exemplars come first
        base = request.seed or 0
        return [self.model.sample(question, base + i) for i in range(request.n)]

    def _choice(self, sample: Sample, request: GenerationRequest, tokens: int | None = None) -> Choice:
        lps = sample.token_logprobs[:tokens]
        text = sample.text if tokens is None else "".join(sample.tokens()[:tokens])
        return Choice(
            text=text,
            finish_reason="stop" if tokens is None else "cancelled",
            token_logprobs=list(lps) if request.logprobs else None,
            completion_tokens=len(lps),
        )

    async def _generate(self, request: GenerationRequest) -> Completion:
        choices = [self._choice(s, request) for s in self._samples(request)]
        return Completion(
            choices=choices,
            prompt_tokens=len(request.as_text()) // 4,
            completion_tokens=sum(c.completion_tokens or 0 for c in choices),
            model="simulated",
        )

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        # Choices are streamed round-robin, CHUNK_TOKENS at a time, as a server interleaves them.
        samples = self._samples(request)
        longest = max(len(s.token_logprobs) for s in samples)
        for start in range(0, longest, CHUNK_TOKENS):
            for index, s in enumerate(samples):
                if start < len(s.token_logprobs):
                    end = start + CHUNK_TOKENS
                    yield StreamChunk(
                        index=index,
                        text="".join(s.tokens()[start:end]),
                        token_logprobs=list(s.token_logprobs[start:end]) if request.logprobs else None,
                    )
        yield StreamChunk(completion=await self._generate(request))
