"""A backend for any OpenAI-compatible HTTP server (OpenAI, vLLM, llama.cpp server, SGLang, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from reasoner.backends.base import Backend, BackendError
from reasoner.types import Choice, Completion, GenerationRequest, Message, ToolCall

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Statuses worth another try: the official OpenAI client retries the same set.
RETRY_STATUSES = frozenset({408, 409, 429})
_MAX_QUOTE = 300


# httpcore's pool does work quadratic in its connection count on every request (it recounts all
# connections for each idle one); at 64 connections that costs more CPU than the request itself.
# Several small clients keep it flat: 1000 requests at 64 in flight went from ~7 s to ~1.5 s.
_CONNECTIONS_PER_CLIENT = 4
# A failed replica is skipped for 1 s, then 2, 4, ... up to this, while it keeps failing.
_MAX_COOL_DOWN_S = 30.0


@dataclass
class _Shard:
    client: httpx.AsyncClient
    capacity: int
    busy: int = 0


@dataclass
class _Replica:
    """One server of the model: its clients, its requests in flight, and whether it is skipped."""

    url: str
    pool: list[_Shard] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    in_flight: int = 0
    failures: int = 0  # in a row
    down_until: float = 0.0


class _Malformed(Exception):
    """A 2xx answer whose body is not what the endpoint promises."""


class OpenAIBackend(Backend):
    """Calls /chat/completions (or /completions for text prompts when `chat=False`).

    Transient failures (429, 5xx, timeouts, dropped connections, garbled bodies) are retried with
    full-jitter exponential backoff, honouring `Retry-After`; other 4xx fail at once.

    A request ending in an assistant message asks the model to continue that message. Servers that
    can (vLLM) do so with `continue_final=True`; otherwise the prefix is folded into the user turn,
    and in completion mode (`chat=False`) the turns are joined into one text prompt.

    Several base URLs (a list, or one comma-separated string) are replicas of one model: each
    request goes to the replica with the fewest requests in flight. A replica that fails (refused
    or dropped connection, timeout, 5xx) is skipped, and the request retried at once on another;
    it gets one trial request after a cool-down that doubles while it keeps failing (1 s to 30 s).
    When every replica is down, requests wait out the usual backoff between attempts.
    """

    name = "openai"
    supports_n = True
    supports_tools = True
    supports_json_schema = True

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str | None = None,
        *,
        api_key: str | None = None,
        chat: bool = True,
        max_in_flight: int = 64,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        extra_body: dict[str, Any] | None = None,
        continue_final: bool = False,
    ) -> None:
        super().__init__(max_in_flight)
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        urls = base_url.split(",") if isinstance(base_url, str) else list(base_url)
        urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        if not urls:
            raise ValueError("OpenAIBackend needs a base URL")
        self.base_url = ",".join(urls)
        self._replicas = [_Replica(url) for url in urls]
        self._turn = 0
        self.model = model
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        # SecretStr keeps the key out of vars(), debuggers and tracebacks that print locals.
        self._api_key = SecretStr(key) if key else None
        self.chat = chat
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = dict(extra_body or {})
        self.continue_final = continue_final
        #: Replaced in tests to skip real waiting.
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._clock: Callable[[], float] = time.monotonic
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, chat={self.chat})"

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "base_url": self.base_url,
            "model": self.model,
            "chat": self.chat,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "max_attempts": self.max_attempts,
            "backoff_base": self.backoff_base,
            "backoff_max": self.backoff_max,
            "extra_body": self.extra_body,
            "continue_final": self.continue_final,
        }

    # -- the client ----------------------------------------------------------------------------------

    def _shards(self, replica: _Replica) -> list[_Shard]:
        loop = asyncio.get_running_loop()
        # Pooled connections belong to the loop that opened them, so a backend reused under a
        # new asyncio.run() needs fresh clients.
        if not replica.pool or replica.loop is not loop or replica.pool[0].client.is_closed:
            headers = {"User-Agent": "reasoner"}
            if self._api_key is not None:
                headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
            timeout = httpx.Timeout(
                connect=self.connect_timeout, read=self.read_timeout, write=self.connect_timeout, pool=self.read_timeout
            )
            # Loading the CA bundle is the slow part of making a client: do it once for all of them.
            tls = httpx.create_ssl_context()
            sizes = [_CONNECTIONS_PER_CLIENT] * (self.max_in_flight // _CONNECTIONS_PER_CLIENT)
            if self.max_in_flight % _CONNECTIONS_PER_CLIENT:
                sizes.append(self.max_in_flight % _CONNECTIONS_PER_CLIENT)
            replica.pool = [
                _Shard(
                    httpx.AsyncClient(
                        base_url=replica.url,
                        headers=headers,
                        timeout=timeout,
                        verify=tls,
                        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                    ),
                    capacity=size,
                )
                for size in sizes
            ]
            replica.loop = loop
        return replica.pool

    def _pick(self) -> _Replica:
        """The replica with the fewest requests in flight among those not skipped."""
        now = self._clock()
        # A replica back from its cool-down takes one trial request before it gets its share.
        up = [r for r in self._replicas if r.down_until <= now and (r.failures == 0 or r.in_flight == 0)]
        if not up:
            # All down: the one due back first; the caller's backoff paces the attempts.
            return min(self._replicas, key=lambda r: r.down_until)
        # Ties rotate, so light sequential traffic still reaches every replica.
        self._turn = (self._turn + 1) % len(up)
        return min(up[self._turn :] + up[: self._turn], key=lambda r: r.in_flight)

    @contextlib.contextmanager
    def _lease(self) -> Iterator[tuple[_Replica, httpx.AsyncClient]]:
        """A replica and its client with the most free connections, counted busy until the block ends."""
        replica = self._pick()
        shard = max(self._shards(replica), key=lambda s: s.capacity - s.busy)
        shard.busy += 1
        replica.in_flight += 1
        try:
            yield replica, shard.client
        finally:
            shard.busy -= 1
            replica.in_flight -= 1

    def _failed(self, replica: _Replica, cause: str) -> None:
        now = self._clock()
        if replica.down_until > now:
            return  # its other requests in flight failed too: one failure, not many
        replica.failures += 1
        cool_down = min(_MAX_COOL_DOWN_S, 2.0 ** (replica.failures - 1))
        replica.down_until = now + cool_down
        if len(self._replicas) > 1:
            log.warning(self._scrub(f"replica {replica.url} failed ({cause}); skipping it for {cool_down:.0f}s"))

    def _succeeded(self, replica: _Replica) -> None:
        if replica.failures and len(self._replicas) > 1:
            log.warning(f"replica {replica.url} is back")
        replica.failures = 0
        replica.down_until = 0.0

    def _any_up(self) -> bool:
        now = self._clock()
        return any(r.down_until <= now for r in self._replicas)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        for replica in self._replicas:
            pool, replica.pool = replica.pool, []
            if replica.loop is not loop:
                continue  # closing needs the loop that opened the connections, and that one has ended
            for shard in pool:
                if not shard.client.is_closed:
                    await shard.client.aclose()

    # -- calls ---------------------------------------------------------------------------------------

    async def _generate(self, request: GenerationRequest) -> Completion:
        use_chat = self.chat
        path = "/chat/completions" if use_chat else "/completions"
        started = time.perf_counter()
        payload = self._payload(request, use_chat)
        completion = await self._call("POST", path, payload, lambda data: _parse_completion(data, use_chat))
        # Wall time including retries: what the caller actually waited.
        completion.latency_s = time.perf_counter() - started
        return completion

    async def list_models(self) -> list[str]:
        return [card["id"] for card in await self.model_cards()]

    async def model_cards(self) -> list[dict[str, Any]]:
        """The `/models` entries as the server sends them (vLLM's say `"owned_by": "vllm"`)."""
        return await self._call("GET", "/models", None, _parse_models)

    def _payload(self, request: GenerationRequest, chat: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.model is not None:
            body["model"] = self.model
        if chat:
            body["messages"] = [_message_json(m) for m in request.as_messages(can_prefill=self.continue_final)]
            if self.continue_final and request.prefill is not None:
                # vLLM's (and transformers') names for "continue the last assistant turn".
                body.update(continue_final_message=True, add_generation_prompt=False)
        else:
            body["prompt"] = request.as_text()
        body.update(n=request.n, temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_tokens)
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.logprobs:
            body["logprobs"] = True if chat else 1
        if request.tools:
            body["tools"] = list(request.tools)
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema, "strict": True},
            }
        body.update(self.extra_body)
        return body

    async def _call(self, method: str, path: str, payload: dict[str, Any] | None, parse: Callable[[Any], T]) -> T:
        cause = "no attempt made"
        for attempt in range(self.max_attempts):
            wait: float | None = None
            with self._lease() as (replica, client):
                try:
                    response = await client.request(method, path, json=payload)
                except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                    cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    self._failed(replica, cause)
                except httpx.HTTPError as exc:  # a bad URL or a client-side protocol error: retrying cannot help
                    raise BackendError(self._scrub(f"{method} {path} failed: {type(exc).__name__}: {exc}")) from None
                else:
                    status = response.status_code
                    if status in RETRY_STATUSES or status >= 500:
                        cause = f"HTTP {status}: {self._quote(_server_message(response))}"
                        wait = retry_after_seconds(response.headers)
                        if status >= 500:
                            self._failed(replica, cause)
                    elif status >= 400:
                        raise BackendError(
                            f"{method} {path} was rejected with HTTP {status}: {self._quote(_server_message(response))}"
                        ) from None
                    else:
                        try:
                            result = parse(response.json())
                        except (ValueError, _Malformed) as exc:
                            cause = f"malformed response body ({exc}): {self._quote(response.text)}"
                        else:
                            self._succeeded(replica)
                            return result
            if attempt + 1 < self.max_attempts:
                # Another replica is up: go there now; waiting would only idle it.
                failed_over = replica.down_until > self._clock() and self._any_up()
                delay = 0.0 if failed_over else self._backoff(attempt, wait)
                note = f"{method} {path} attempt {attempt + 1}/{self.max_attempts} failed ({cause})"
                log.warning(self._scrub(f"{note}; retrying in {delay:.2f}s"))
                await self._sleep(delay)
        raise BackendError(
            self._scrub(f"{method} {path} failed after {self.max_attempts} attempts; last error: {cause}")
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.backoff_max, retry_after)
        return self._rng.uniform(0.0, min(self.backoff_max, self.backoff_base * 2**attempt))

    def _quote(self, text: str) -> str:
        """Server text fit for a message: scrubbed first, so truncation cannot leave half a key."""
        text = " ".join(self._scrub(text).split())
        return text if len(text) <= _MAX_QUOTE else text[:_MAX_QUOTE] + "..."

    def _scrub(self, message: str) -> str:
        """Remove the API key from a message: servers sometimes echo it back in errors."""
        if self._api_key is not None:
            key = self._api_key.get_secret_value()
            message = message.replace(key, "[REDACTED]")
        return message


def from_openai_env(model: str, **kwargs: Any) -> OpenAIBackend:
    """A backend configured like the official client: OPENAI_BASE_URL and OPENAI_API_KEY."""
    return OpenAIBackend(os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL, model, **kwargs)


def retry_after_seconds(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """How long the server asked us to wait, from `retry-after-ms` or `Retry-After` (seconds or HTTP-date)."""
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


def _message_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _parse_completion(data: Any, chat: bool) -> Completion:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise _Malformed("no `choices`")
    choices: list[Choice] = []
    try:
        for raw in sorted(data["choices"], key=lambda c: c.get("index", 0)):
            message = raw.get("message") or {}
            text = message.get("content") if chat else raw.get("text")
            calls = [
                ToolCall(id=c.get("id", ""), name=c["function"]["name"], arguments=c["function"].get("arguments") or "{}")
                for c in message.get("tool_calls") or []
            ]
            choices.append(
                Choice(
                    text=text or "",
                    finish_reason=raw.get("finish_reason"),
                    token_logprobs=_token_logprobs(raw.get("logprobs"), chat),
                    tool_calls=calls or None,
                )
            )
        usage = data.get("usage") or {}
        return Completion(
            choices=choices,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model=data.get("model"),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise _Malformed(f"unexpected shape: {exc}") from None


def _token_logprobs(logprobs: Any, chat: bool) -> list[float] | None:
    if not logprobs:
        return None
    if chat:
        return [float(t["logprob"]) for t in logprobs.get("content") or []]
    # The first prompt token has no log-probability when a server echoes the prompt.
    return [float(v) for v in logprobs.get("token_logprobs") or [] if v is not None]


def _parse_models(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise _Malformed("no `data` list")
    try:
        return [{**card, "id": str(card["id"])} for card in data["data"]]
    except (KeyError, TypeError) as exc:
        raise _Malformed(f"unexpected shape: {exc}") from None


def _server_message(response: httpx.Response) -> str:
    """The error message of an OpenAI-style error body, else the body itself."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)
    except (ValueError, AttributeError):
        pass
    return response.text or "(empty body)"
