"""Why a model call failed, as types: callers test `isinstance`, never words in a message.

    BackendError                 any failure; the message never contains a secret
    ├── BackendConnectionError   refused, reset or dropped connection, DNS failure
    ├── BackendTimeoutError      stalled (no bytes for `stall_timeout_s`) or past `deadline_s`
    ├── RateLimitedError         HTTP 429; `retry_after` is what the server asked for
    ├── BadRequestError          the server refused this request (4xx, or a 500 saying it is invalid)
    ├── ServerError              the server failed (5xx, 409)
    └── MalformedResponseError   a 2xx whose body is not what the endpoint promises, or too big

`retryable` says whether sending the same request again can help; the retry layer reads it.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import datetime, timezone


class BackendError(Exception):
    """A model call failed for good (after any retries). The message never contains secrets."""

    #: Whether the same request may succeed if sent again.
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: The HTTP status that caused it, where there was one.
        self.status = status
        #: Seconds the server asked the client to wait before trying again.
        self.retry_after = retry_after
        #: Set by the replica router: this replica is now skipped and another is up, so a retry
        #: should go at once rather than wait out a backoff.
        self.failover = False

    def again(self, message: str) -> BackendError:
        """The same kind of error with a new message (e.g. after the last of several attempts)."""
        copy = type(self)(message, status=self.status, retry_after=self.retry_after)
        copy.retryable = self.retryable
        return copy


class BackendConnectionError(BackendError):
    """The connection could not be made or was lost before a full answer arrived."""

    retryable = True


class BackendTimeoutError(BackendError):
    """No answer in time: the server stalled, or the request's overall deadline passed."""

    retryable = True


class RateLimitedError(BackendError):
    """The server asked us to slow down (HTTP 429)."""

    retryable = True


class BadRequestError(BackendError):
    """The server refused the request as sent (4xx, or a 500 whose body says the request was
    invalid, as llama-cpp-python's server answers an unknown `response_format`): sending it
    again unchanged cannot help."""


class ServerError(BackendError):
    """The server failed to answer (5xx, or 409 conflict); another try may succeed."""

    retryable = True


class MalformedResponseError(BackendError):
    """A 2xx answer whose body is not what the endpoint promises (garbled JSON, no choices, a tool
    call without a name). Retried, unless the body was over `max_response_bytes`: a server that
    sends an endless body would only do so again."""

    retryable = True


# How servers word "your request is invalid" when they answer it with a 500 (llama-cpp-python's
# server wraps pydantic's validation errors this way).
_INVALID = re.compile(r"validation error|invalid|input should be|not supported|unsupported|unrecognized", re.I)
# Statuses worth another try, as the official OpenAI client retries: 408, 409, 429 and 5xx.
_TIMEOUT_STATUS = 408
_CONFLICT_STATUS = 409
_RATE_LIMITED_STATUS = 429


def from_status(status: int, detail: str, retry_after: float | None = None) -> BackendError:
    """The error an HTTP error status stands for; `detail` is the server's message (scrubbed)."""
    kind: type[BackendError]
    if status == _RATE_LIMITED_STATUS:
        kind = RateLimitedError
    elif status == _TIMEOUT_STATUS:
        kind = BackendTimeoutError
    elif status >= 500 and _INVALID.search(detail):
        kind = BadRequestError
    elif status >= 500 or status == _CONFLICT_STATUS:
        kind = ServerError
    else:
        kind = BadRequestError
    return kind(f"HTTP {status}: {detail}", status=status, retry_after=retry_after)


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """How long the server asked us to wait, from `retry-after-ms` or `Retry-After` (seconds or
    HTTP-date); `headers` must look names up case-insensitively (httpx.Headers does)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
