"""OpenAIBackend over real sockets (the fake server on 127.0.0.1): retries, stalls, deadlines,
size caps, concurrency, streaming and its cancellation."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from reasoner.backends.errors import BackendConnectionError, BackendTimeoutError, MalformedResponseError, ServerError
from reasoner.backends.http import OpenAIBackend
from reasoner.testing import fake_openai
from reasoner.testing.fake_openai import Fault, FakeOpenAIServer
from reasoner.types import GenerationRequest, StreamChunk

# No assertion here is on elapsed time (CI machines are small and noisy): a wait is proved by the
# delays the backend asked for, and a cut-off by what the fake server saw (requests it never
# answered, a client that hung up). `asyncio.wait_for` only keeps a broken build from hanging.


def _reply(body: dict[str, Any], index: int) -> str:
    return f"answer {index} is 42"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer("fake-model", responder=_reply, logprob_fn=lambda body, i, text: -0.5) as srv:
        yield srv


@pytest.fixture
async def backend(server: FakeOpenAIServer) -> AsyncIterator[OpenAIBackend]:
    be = OpenAIBackend(server.base_url, "fake-model", backoff_base=0.001, stall_timeout_s=5.0)
    yield be
    await be.aclose()


def _ask(prompt: str = "what is six times seven", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **kwargs)


async def _settled(server: FakeOpenAIServer) -> None:
    """Until the server handles no completion request: an abandoned one ends when the server
    sees its client hang up, a moment after the client gave up on it."""

    async def poll() -> None:
        while server.in_flight:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout=10)  # a guard against a hang, not a measurement


async def _hung_up(server: FakeOpenAIServer) -> None:
    """Until the server has seen the client hang up on one streamed body, before its end."""

    async def poll() -> None:
        while server.streams_cancelled < 1:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout=10)  # a guard against a hang, not a measurement
    assert server.streams_cancelled == 1


def _attempts(error: BaseException) -> int:
    found = re.search(r"(\d+) attempts", str(error))
    assert found, str(error)
    return int(found.group(1))


async def test_429_waits_for_retry_after(server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    server.add_faults(Fault.status(429, headers={"Retry-After": "1"}))
    waits: list[tuple[float, int, int]] = []  # (seconds asked for, requests sent before, and after it)

    async def sleep(seconds: float) -> None:
        before = len(server.completion_requests())
        await asyncio.sleep(seconds)  # really waits, as the default does
        waits.append((seconds, before, len(server.completion_requests())))

    backend.retrying.sleep = sleep
    completion = await backend.generate(_ask())

    assert completion.text == "answer 0 is 42"
    # The one retry waited the Retry-After second (not a jittered backoff), and nothing was sent meanwhile.
    assert waits == [(1.0, 1, 1)]
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "fault",
    [Fault.status(500), Fault.status(503, body="upstream busy"), Fault.malformed(), Fault.malformed('{"no": "choices"}'), Fault.drop()],
    ids=["500", "503-text", "truncated-json", "no-choices", "drop"],
)
async def test_transient_failures_are_retried(server: FakeOpenAIServer, backend: OpenAIBackend, fault: Fault) -> None:
    server.add_faults(fault, fault)

    completion = await backend.generate(_ask())

    assert completion.text == "answer 0 is 42"
    assert len(server.completion_requests()) == 3


async def test_a_stalled_answer_is_retried(server: FakeOpenAIServer) -> None:
    server.add_faults(Fault.delay(3.0))
    async with OpenAIBackend(server.base_url, stall_timeout_s=0.2, backoff_base=0.001) as backend:
        completion = await backend.generate(_ask())
        await _settled(server)

    assert completion.text == "answer 0 is 42"
    assert len(server.requests) == 2
    # The client hung up on the stalled request before its answer (3 s late) was ready, so the
    # server never served it: only the retry was answered.
    assert server.completions_served == 1


async def test_a_server_that_never_answers_fails_within_the_deadline(server: FakeOpenAIServer) -> None:
    server.add_faults(*[Fault.delay(60.0)] * 20)
    async with OpenAIBackend(server.base_url, stall_timeout_s=0.3, deadline_s=1.5, backoff_base=0.001) as backend:
        with pytest.raises(BackendTimeoutError, match=r"deadline_s \(1.5 s") as info:
            await asyncio.wait_for(backend.generate(_ask()), timeout=30)
        # Every attempt was abandoned, the last one by the deadline while in flight: the server
        # is left handling nothing (a kept connection would hold it in its 60 s delay).
        await _settled(server)

    attempts = _attempts(info.value)
    assert attempts >= 3  # each stall was retried until the deadline
    assert attempts < backend.retrying.max_attempts  # the deadline ended it, not running out of attempts
    assert len(server.requests) == attempts  # each attempt reached the server
    assert server.completions_served == 0


async def test_a_trickling_body_fails_at_the_deadline(server: FakeOpenAIServer) -> None:
    # A byte every 0.1 s never trips the stall timeout; only the overall deadline ends it.
    server.add_faults(*[Fault.trickle(0.1)] * 5)
    async with OpenAIBackend(server.base_url, stall_timeout_s=1.0, deadline_s=1.5) as backend:
        with pytest.raises(BackendTimeoutError, match=r"deadline_s \(1.5 s, 1 attempts\)"):
            await asyncio.wait_for(backend.generate(_ask()), timeout=30)

        # The client hung up at the deadline, mid-body (1,000,000 bytes at 10 a second).
        await _hung_up(server)

    assert len(server.requests) == 1  # the stall timeout never fired: no retry


async def test_an_endless_body_is_cut_off_as_malformed_and_not_retried(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = 0  # 64 KiB writes the server made
    source = fake_openai.endless

    async def endless() -> AsyncIterator[bytes]:  # the server's endless body, counted
        nonlocal pieces
        async for piece in source():
            pieces += 1
            yield piece

    monkeypatch.setattr(fake_openai, "endless", endless)
    server.add_faults(*[Fault.endless()] * 3)
    async with OpenAIBackend(server.base_url, max_response_bytes=1 << 20, deadline_s=20) as backend:
        # Not the deadline's BackendTimeoutError: the cap cut the body off.
        with pytest.raises(MalformedResponseError, match=r"max_response_bytes \(1,048,576 bytes\)"):
            await asyncio.wait_for(backend.generate(_ask()), timeout=30)
        # The client dropped the connection rather than reading on: the server saw it hang up.
        await _hung_up(server)

    assert pieces > (1 << 20) // 65536  # more than the cap was sent: the cap is what stopped it
    assert len(server.requests) == 1


async def test_gives_up_after_max_attempts(server: FakeOpenAIServer) -> None:
    server.add_faults(*[Fault.status(500)] * 10)
    async with OpenAIBackend(server.base_url, max_attempts=3, backoff_base=0.001) as backend:
        with pytest.raises(ServerError) as info:
            await backend.generate(_ask())

    message = str(info.value)
    assert "3 attempts" in message
    assert "/chat/completions" in message
    assert "HTTP 500" in message
    assert len(server.requests) == 3


async def test_backoff_uses_full_jitter_and_caps_retry_after(server: FakeOpenAIServer) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    server.add_faults(Fault.status(502), Fault.status(502), Fault.status(429, headers={"Retry-After": "120"}))
    async with OpenAIBackend(server.base_url, backoff_base=0.5, backoff_max=10.0) as backend:
        backend.retrying.sleep = fake_sleep
        await backend.generate(_ask())

    assert 0 <= slept[0] <= 0.5 and 0 <= slept[1] <= 1.0
    assert slept[2] == 10.0


@pytest.mark.parametrize("limit", [4, 6])
async def test_in_flight_bound_is_respected(server: FakeOpenAIServer, limit: int) -> None:
    server.latency_s = 0.05
    async with OpenAIBackend(server.base_url, max_in_flight=limit) as backend:
        results = await asyncio.gather(*(backend.generate(_ask(f"question {i}")) for i in range(20)))

    assert len(results) == 20
    # Reaching the bound, not only staying under it: the connection pool must not be the limit.
    assert server.peak_in_flight == limit


async def test_unreachable_server_is_retried_then_reported() -> None:
    with FakeOpenAIServer() as srv:
        url = srv.base_url  # a port that nothing listens on once the server stops
    async with OpenAIBackend(url, max_attempts=2, backoff_base=0.001, connect_timeout=1.0) as backend:
        with pytest.raises(BackendConnectionError, match="2 attempts.*ConnectError"):
            await backend.generate(_ask())


def test_server_runs_as_a_subprocess() -> None:
    command = [sys.executable, "-m", "reasoner.testing.fake_openai", "--port", "0", "--latency", "0.01"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            base_url = proc.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
            body = {"messages": [{"role": "user", "content": "hi"}], "n": 2}
            reply = httpx.post(f"{base_url}/chat/completions", json=body)
            assert reply.status_code == 200
            assert len(reply.json()["choices"]) == 2
        finally:
            proc.terminate()


async def _collect(backend: OpenAIBackend, request: GenerationRequest) -> list[StreamChunk]:
    return [chunk async for chunk in backend.stream(request)]


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completions"])
async def test_streaming_yields_text_per_choice_then_the_whole_completion(server: FakeOpenAIServer, chat: bool) -> None:
    async with OpenAIBackend(server.base_url, "fake-model", chat=chat) as backend:
        assert backend.supports_streaming
        chunks = await _collect(backend, _ask(n=2, logprobs=True, temperature=1.0))

    *pieces, last = chunks
    assert last.completion is not None
    for index in (0, 1):
        mine = [c for c in pieces if c.index == index]
        assert "".join(c.text for c in mine) == f"answer {index} is 42"
        assert [lp for c in mine for lp in c.token_logprobs or []] == [-0.5] * 4
    assert [c.text for c in last.completion.choices] == ["answer 0 is 42", "answer 1 is 42"]
    assert last.completion.choices[0].finish_reason == "stop"
    assert (last.completion.prompt_tokens, last.completion.completion_tokens) == (5, 8)  # include_usage
    body = server.completion_requests()[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_a_stream_start_is_retried(server: FakeOpenAIServer, backend: OpenAIBackend) -> None:
    server.add_faults(Fault.status(503), Fault.drop())
    chunks = await _collect(backend, _ask())
    assert chunks[-1].completion is not None and chunks[-1].completion.text == "answer 0 is 42"
    assert len(server.completion_requests()) == 3


async def test_leaving_a_stream_closes_it_so_the_server_stops() -> None:
    words = " ".join(f"w{i}" for i in range(200))
    with FakeOpenAIServer(responder=lambda body, i: words, stream_delay_s=0.01) as server:
        async with OpenAIBackend(server.base_url, "fake-model") as backend:
            got = []
            stream = backend.stream(_ask(max_tokens=500))
            async for chunk in stream:
                got.append(chunk.text)
                if len(got) == 3:
                    break
            await stream.aclose()  # type: ignore[attr-defined]
            assert backend.router.replicas[0].in_flight == 0  # the request's slot is free at once
            await asyncio.sleep(0.3)  # the server notices between two events
            # The connection is reusable for the next request.
            assert (await backend.generate(_ask())).text

        assert server.streams_cancelled == 1
        assert server.stream_events_sent < 50
    assert "".join(got).split() == ["w0", "w1", "w2"]
