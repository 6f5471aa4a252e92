"""A backend for any OpenAI-compatible HTTP server (OpenAI, vLLM, llama.cpp server, SGLang, ...).

The backend speaks the protocol (openai_protocol.py) and learns what the server can do; how a
request travels — pools, replicas, retries — is the transport it is given (transports.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from reasoner import secrets
from reasoner.backends import openai_protocol as protocol
from reasoner.backends.base import Backend
from reasoner.backends.errors import BackendConnectionError, BackendError, BackendTimeoutError, BadRequestError, retry_after_seconds
from reasoner.backends.retry import Retrying
from reasoner.backends.routing import Router
from reasoner.backends.transports import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Call,
    HTTPPool,
    Transport,
)
from reasoner.types import Completion, GenerationRequest, StreamChunk

__all__ = ["OpenAIBackend", "from_openai_env", "retry_after_seconds", "DEFAULT_BASE_URL"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIBackend(Backend):
    """Calls /chat/completions (or /completions for text prompts when `chat=False`).

    Transient failures (429, 5xx, stalls, dropped connections, garbled bodies) are retried with
    full-jitter exponential backoff, honouring `Retry-After`; other 4xx, and 500s whose body says
    the request was invalid, fail at once (see `errors` for the types raised). Every request must
    finish within `deadline_s`, retries included; one that sends no byte for `stall_timeout_s` is
    retried; a body over `max_response_bytes` fails as malformed.

    A request ending in an assistant message asks the model to continue that message. Servers that
    can (vLLM) do so with `continue_final=True`; otherwise the prefix is folded into the user turn,
    and in completion mode (`chat=False`) the turns are joined into one text prompt.

    Several base URLs (a list, or one comma-separated string) are replicas of one model, routed
    least-loaded with failover (routing.Router). `http_transport` replaces the network under the
    connection pools (an `httpx.MockTransport` in tests); `transport` the whole stack.

    What the server can do is learned, once: `connect()` asks /models for the model name when none
    is given (and, for vLLM, whether it takes native tool calls); a server that returns fewer
    choices than `n` is topped up with seeded single requests and marked `supports_n = False`; one
    that refuses `response_format` is asked again without it and marked `supports_json_schema = False`.

    A reasoning model's thinking (`reasoning_content` or `reasoning`) is kept apart from the text.
    `reasoning_controls` declares which thinking-budget controls the server takes ("effort": OpenAI's
    `reasoning_effort`; "budget": vLLM's `thinking_token_budget`, which needs `--reasoning-parser`);
    a request's other controls are left out, with a warning, rather than refused by the server.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str | None = None,
        *,
        api_key: str | None = None,
        chat: bool = True,
        max_in_flight: int = 64,
        connect_timeout: float = 10.0,
        stall_timeout_s: float = 120.0,
        deadline_s: float | None = 600.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        extra_body: dict[str, Any] | None = None,
        continue_final: bool | None = None,
        reasoning_controls: Sequence[str] = (),
        http_transport: httpx.AsyncBaseTransport | None = None,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(max_in_flight)
        urls = base_url.split(",") if isinstance(base_url, str) else list(base_url)
        urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        if not urls:
            raise BackendError("OpenAIBackend needs a base URL")
        for url in urls:
            secrets.register_url(url)
        self.base_url = ",".join(urls)
        self.model = model
        where = "the api_key argument" if api_key is not None else "OPENAI_API_KEY"
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None
        try:
            # SecretStr keeps the key out of vars(), debuggers and tracebacks that print locals.
            self._api_key = SecretStr(secrets.check_api_key(key, where)) if key else None
        except secrets.SecretError as exc:
            raise BackendError(str(exc)) from None
        self.chat = chat
        self.connect_timeout = connect_timeout
        self.stall_timeout_s = stall_timeout_s
        self.deadline_s = deadline_s
        self.max_response_bytes = max_response_bytes
        self.extra_body = dict(extra_body or {})
        self.continue_final = bool(continue_final)
        self._continue_final_given = continue_final is not None
        # What the server is assumed to do until it shows otherwise.
        self.supports_n = True
        self.supports_tools = True
        self.supports_json_schema = True
        self.supports_streaming = True
        unknown = set(reasoning_controls) - {"effort", "budget"}
        if unknown:
            raise BackendError(f"reasoning_controls: unknown {', '.join(sorted(unknown))}; the controls are 'effort' and 'budget'")
        self.reasoning_controls = frozenset(reasoning_controls)
        self._dropped_controls: set[str] = set()
        self._connected = False
        self._rng = random.Random()
        headers = {"User-Agent": "reasoner"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        pools = [
            (url, HTTPPool(url, headers=headers, max_connections=max_in_flight, connect_timeout=connect_timeout,
                           stall_timeout_s=stall_timeout_s, max_response_bytes=max_response_bytes,
                           http_transport=http_transport))
            for url in urls
        ]  # fmt: skip
        self.router = Router(pools)
        self.retrying = Retrying(
            self.router, max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max, deadline_s=deadline_s
        )
        #: The outermost layer: every request goes through it. One given replaces the stack built
        #: from the settings above (`Retrying(Router([HTTPPool(url), ...]))`), e.g. to add a layer.
        self.transport: Transport = transport or self.retrying

    def __repr__(self) -> str:
        return secrets.scrub(f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, chat={self.chat})")

    def describe(self) -> dict[str, object]:
        return secrets.scrub_obj(  # type: ignore[no-any-return]
            {
                **super().describe(),
                "base_url": self.base_url,
                "model": self.model,
                "chat": self.chat,
                "connect_timeout": self.connect_timeout,
                "stall_timeout_s": self.stall_timeout_s,
                "deadline_s": self.deadline_s,
                "max_response_bytes": self.max_response_bytes,
                "max_attempts": self.retrying.max_attempts,
                "backoff_base": self.retrying.backoff_base,
                "backoff_max": self.retrying.backoff_max,
                "extra_body": self.extra_body,
                "continue_final": self.continue_final,
            }
        )

    async def connect(self) -> OpenAIBackend:
        """Learn what needs asking before the first request: the model, when none was named (the
        server must serve exactly one), and for vLLM whether it continues a final assistant
        message (it does) and takes native tool calls (only when started with a tool parser)."""
        if self._connected:
            return self
        if self.model is None:
            cards = await self.model_cards()
            self.model = _only_model([card["id"] for card in cards], secrets.scrub(self.base_url))
            window = cards[0].get("max_model_len")  # vLLM's cards say how long a context it serves
            if isinstance(window, int) and window > 0:
                self.context_window = window
            if all(card.get("owned_by") == "vllm" for card in cards):
                if not self._continue_final_given:
                    self.continue_final = True
                self.supports_tools = await self._accepts_tools()
        self._connected = True
        return self

    async def _accepts_tools(self) -> bool:
        probe = GenerationRequest(prompt="hi", max_tokens=1, tools=(_PROBE_TOOL,))
        try:
            await self.generate(probe)
        except BadRequestError:
            return False
        return True

    async def aclose(self) -> None:
        await self.transport.aclose()

    # -- calls ---------------------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        return [card["id"] for card in await self.model_cards()]

    async def model_cards(self) -> list[dict[str, Any]]:
        """The `/models` entries as the server sends them (vLLM's say `"owned_by": "vllm"`)."""
        reply = await self.transport.send(Call("GET", "/models", parse=protocol.parse_models))
        return reply.data  # type: ignore[no-any-return]

    async def _generate(self, request: GenerationRequest) -> Completion:
        started = time.perf_counter()
        if request.n > 1 and not self.supports_n:
            completion = _merged(await self._singles(request, request.n, first_seed=request.seed))
        else:
            completion = await self._one(request)
            if len(completion.choices) < request.n:
                completion = await self._top_up(request, completion)
        # Wall time including retries: what the caller actually waited.
        completion.latency_s = time.perf_counter() - started
        return completion

    async def _top_up(self, request: GenerationRequest, first: Completion) -> Completion:
        missing = request.n - len(first.choices)
        if self.supports_n:
            self.supports_n = False
            log.warning(
                secrets.scrub(f"{self.base_url} returned {len(first.choices)} of {request.n} choices: it does not honour "
                              "`n`; sampling with one request per choice from now on")
            )  # fmt: skip
        seed = self._rng.randrange(2**31) if request.seed is None else request.seed + 1
        return _merged([first, *await self._singles(request, missing, first_seed=seed)], limit=request.n)

    async def _singles(self, request: GenerationRequest, count: int, first_seed: int | None) -> list[Completion]:
        """`count` one-choice requests at once, with distinct seeds so that they differ."""
        seeds = [None if first_seed is None else first_seed + i for i in range(count)]
        singles = [request.model_copy(update={"n": 1, "seed": seed}) for seed in seeds]
        return list(await asyncio.gather(*(self._one(r) for r in singles)))

    async def _one(self, request: GenerationRequest) -> Completion:
        """One request; a refused `response_format` is sent again without it, and remembered."""
        schema = request.json_schema is not None and self.supports_json_schema
        try:
            return await self._post(request, schema)
        except BadRequestError:
            if not schema:
                raise
        completion = await self._post(request, False)
        if self.supports_json_schema:
            self.supports_json_schema = False
            log.warning(secrets.scrub(f"{self.base_url} refuses `response_format` json_schema; asking for JSON in the prompt only"))
        return completion

    async def _post(self, request: GenerationRequest, schema: bool) -> Completion:
        chat = self.chat
        body = self._payload(request, schema, stream=False)
        call = Call("POST", _path(chat), body, parse=lambda raw: protocol.parse_completion(raw, chat))
        reply = await self.transport.send(call)
        return reply.data  # type: ignore[no-any-return]

    def _payload(self, request: GenerationRequest, schema: bool, *, stream: bool) -> dict[str, Any]:
        asked = {"effort"} if request.reasoning_effort is not None else set()
        asked |= {"budget"} if request.max_reasoning_tokens is not None else set()
        for control in sorted(asked - self.reasoning_controls - self._dropped_controls):
            self._dropped_controls.add(control)
            log.warning(secrets.scrub(f"{self.base_url} is not declared to take the thinking {control} (reasoning_controls); "
                                      "leaving it out of requests"))  # fmt: skip
        return protocol.payload(
            request,
            model=self.model,
            chat=self.chat,
            continue_final=self.continue_final,
            json_schema=schema,
            extra_body=self.extra_body,
            stream=stream,
            reasoning_controls=self.reasoning_controls,
        )

    # -- streaming -----------------------------------------------------------------------------------

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """Server-sent events of a `stream: true` request. The start (status line) is retried like
        any request; once text has been handed on, a failure ends the stream with its error.
        Leaving the loop closes the connection, which is how servers learn to stop generating."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = None if self.deadline_s is None else loop.time() + self.deadline_s
        schema = request.json_schema is not None and self.supports_json_schema
        path = _path(self.chat)
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    reply = await self.transport.send(Call("POST", path, self._payload(request, schema, stream=True), stream=True))
                except BadRequestError:
                    if not schema:
                        raise
                    reply = await self.transport.send(Call("POST", path, self._payload(request, False, stream=True), stream=True))
                    self.supports_json_schema = False
        except TimeoutError:
            raise BackendTimeoutError(f"POST {path} stream did not start within deadline_s ({self.deadline_s:g} s)") from None
        reader = protocol.StreamReader(self.chat)
        try:
            lines = reply.lines()
            while not reader.done:
                try:
                    async with asyncio.timeout_at(deadline):
                        line = await anext(lines)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise BackendTimeoutError(f"POST {path} stream did not end within deadline_s ({self.deadline_s:g} s)") from None
                for chunk in reader.feed(line):
                    yield chunk
        finally:
            await reply.aclose()
        if not reader.finished:
            raise BackendConnectionError(f"POST {path} stream was cut off before its end")
        yield StreamChunk(completion=reader.completion(time.perf_counter() - started))


def from_openai_env(model: str, **kwargs: Any) -> OpenAIBackend:
    """A backend configured like the official client: OPENAI_BASE_URL and OPENAI_API_KEY."""
    return OpenAIBackend(os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL, model, **kwargs)


_PROBE_TOOL = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}


def _path(chat: bool) -> str:
    return "/chat/completions" if chat else "/completions"


def _merged(parts: list[Completion], limit: int | None = None) -> Completion:
    joined = Completion.joined(parts)
    return joined if limit is None else joined.model_copy(update={"choices": joined.choices[:limit]})


def _only_model(models: list[str], where: str) -> str:
    if len(models) == 1:
        return models[0]
    if not models:
        raise BackendError(f"{where} lists no models; name one with --model-name")
    raise BackendError(f"{where} serves several models ({', '.join(models)}); choose one with --model-name")
