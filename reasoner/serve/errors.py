"""OpenAI-style error bodies, and which HTTP status each failure gets.

Every failure reaches the client as `{"error": {"message", "type", "param", "code"}}` with a
4xx/5xx status; never a Python traceback. Messages pass through `secrets.scrub`.
"""

from __future__ import annotations

from typing import Any

from reasoner import secrets
from reasoner.backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeoutError,
    BadRequestError,
    MalformedResponseError,
    RateLimitedError,
    ServerError,
)

# Upstream statuses that describe the client's own request, passed on as they are in a passthrough.
_CLIENT_STATUSES = {400, 404, 413, 422}


class APIError(Exception):
    """A failure to answer with `status` and an OpenAI-style body; `param` names the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = secrets.scrub(message)
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def overloaded(message: str, retry_after: int) -> APIError:
    """503: no room for the request now; `Retry-After` says when to try again (OpenAI's SDK waits that long)."""
    return APIError(503, message, type="server_error", code="overloaded", headers={"Retry-After": str(retry_after)})


def backend_error(exc: BaseException | None) -> BackendError | None:
    """The upstream failure behind a failed run, where there is one: the exception itself, or
    one it was raised from (a failed step's, a failed sample's that a vote could not do without)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BackendError):
            return exc
        seen.add(id(exc))
        exc = getattr(exc, "exception", None) or exc.__cause__ or exc.__context__
    return None


def from_backend(exc: BackendError, *, passthrough: bool = False) -> APIError:
    """The status an upstream failure stands for: 429 rate limited, 504 timed out, 502 otherwise.

    In a passthrough the upstream's verdict on the client's own request (400, 404, 422) is passed
    on; a strategy builds its requests itself, so there an upstream 4xx is the gateway's failure.
    """
    message = f"upstream: {exc}"
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": f"{exc.retry_after:.0f}"} if exc.retry_after is not None else {}
        return APIError(429, message, type="rate_limit_error", code="upstream_rate_limited", headers=headers)
    if isinstance(exc, BackendTimeoutError):
        return APIError(504, message, type="timeout_error", code="upstream_timeout")
    if isinstance(exc, BadRequestError) and passthrough and exc.status in _CLIENT_STATUSES:
        return APIError(exc.status or 400, message, code="upstream_refused")
    code = {
        BackendConnectionError: "upstream_unreachable",
        ServerError: "upstream_error",
        MalformedResponseError: "upstream_malformed",
        BadRequestError: "upstream_refused",
    }.get(type(exc), "upstream_error")
    return APIError(502, message, type="upstream_error", code=code)
