"""Retries as a transport: exponential backoff with full jitter, `Retry-After`, an overall deadline."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from reasoner import secrets
from reasoner.backends.errors import BackendError, BackendTimeoutError, BadRequestError
from reasoner.backends.transports import Call, Reply, Transport

log = logging.getLogger(__name__)


class Retrying(Transport):
    """Resends a call whose error is `retryable` (connection, timeout, 429, 5xx, malformed body),
    up to `max_attempts` in all. Between attempts it waits a uniformly random time up to
    `backoff_base * 2**attempt` (full jitter) capped at `backoff_max`, or what the server's
    `Retry-After` asked for (capped likewise); not at all when the router has failed the call
    over to another replica. Other errors (a 4xx, a 500 that says the request is invalid) fail at
    once. The whole call, every attempt and wait included, must end within `deadline_s` (None:
    no deadline), else it fails with `BackendTimeoutError`.
    """

    def __init__(
        self,
        inner: Transport,
        *,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        deadline_s: float | None = 600.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if deadline_s is not None and deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive (or None for no deadline), got {deadline_s}")
        self.inner = inner
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.deadline_s = deadline_s
        #: Replaced in tests to skip real waiting.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.rng = random.Random()

    async def send(self, call: Call) -> Reply:
        if self.deadline_s is None:
            return await self._attempts(call, [])
        errors: list[BackendError] = []
        try:
            async with asyncio.timeout(self.deadline_s):
                return await self._attempts(call, errors)
        except TimeoutError:
            last = f"; last error: {errors[-1]}" if errors else ""
            message = f"{call.where} got no answer within deadline_s ({self.deadline_s:g} s, {len(errors) + 1} attempts){last}"
            raise BackendTimeoutError(secrets.scrub(message)) from None

    async def _attempts(self, call: Call, errors: list[BackendError]) -> Reply:
        for attempt in range(self.max_attempts):
            try:
                return await self.inner.send(call)
            except BackendError as exc:
                if not exc.retryable:
                    how = "was rejected with" if isinstance(exc, BadRequestError) else "failed:"
                    raise exc.again(secrets.scrub(f"{call.where} {how} {exc}")) from None
                errors.append(exc)
            if attempt + 1 < self.max_attempts:
                last = errors[-1]
                delay = 0.0 if last.failover else self.backoff(attempt, last.retry_after)
                note = f"{call.where} attempt {attempt + 1}/{self.max_attempts} failed ({last})"
                log.warning(secrets.scrub(f"{note}; retrying in {delay:.2f}s"))
                await self.sleep(delay)
        message = f"{call.where} failed after {self.max_attempts} attempts; last error: {errors[-1]}"
        raise errors[-1].again(secrets.scrub(message)) from None

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.backoff_max, retry_after)
        return self.rng.uniform(0.0, min(self.backoff_max, self.backoff_base * 2**attempt))

    async def aclose(self) -> None:
        await self.inner.aclose()
