"""OpenAIBackend over several replicas of one model (routing.Router): least-loaded routing,
failover, recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest

from reasoner.backends.errors import BackendConnectionError, ServerError
from reasoner.backends.http import OpenAIBackend
from reasoner.backends.routing import Router
from reasoner.backends.transports import Call, Reply, Transport
from reasoner.backends.spec import open_backend
from reasoner.testing.fake_openai import Fault, FakeOpenAIServer
from reasoner.strategy import get_strategy
from reasoner.types import GenerationRequest

ASK = GenerationRequest(prompt="what is six times seven")


@pytest.fixture
def pair() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    with FakeOpenAIServer(latency_s=0.05) as a, FakeOpenAIServer(latency_s=0.05) as b:
        yield a, b


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def routed(a: FakeOpenAIServer, b: FakeOpenAIServer, **kwargs: object) -> OpenAIBackend:
    backend = OpenAIBackend([a.base_url, b.base_url], "fake-model", backoff_base=0.001, **kwargs)  # type: ignore[arg-type]
    backend.router.clock = Clock()
    return backend


async def test_requests_go_to_the_replica_with_fewest_in_flight(pair: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, b = pair
    async with routed(a, b, max_in_flight=8) as backend:
        await asyncio.gather(*(backend.generate(ASK) for _ in range(40)))

    assert a.completions_served + b.completions_served == 40
    assert abs(a.completions_served - b.completions_served) <= 2
    assert a.peak_in_flight <= 5 and b.peak_in_flight <= 5  # 8 in flight, shared out


async def test_sequential_requests_still_reach_every_replica(pair: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, b = pair
    async with routed(a, b) as backend:
        for _ in range(6):
            await backend.generate(ASK)

    assert (a.completions_served, b.completions_served) == (3, 3)


@pytest.mark.parametrize("fault", [Fault.status(503), Fault.drop()], ids=["503", "dropped"])
async def test_a_failing_replica_is_skipped_at_once_and_retried_after_a_cool_down(
    pair: tuple[FakeOpenAIServer, FakeOpenAIServer], fault: Fault
) -> None:
    a, b = pair
    b.add_faults(fault)
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with routed(a, b) as backend:
        backend.retrying.sleep = fake_sleep
        backend.router.turn = 0  # the first request goes to b
        assert (await backend.generate(ASK)).text.startswith("Echo 0")
        assert sleeps == [0.0]  # failed over without a backoff
        for _ in range(4):
            await backend.generate(ASK)
        assert b.completions_served == 0  # skipped while cooling down

        backend.router.clock.now += 1.5  # type: ignore[attr-defined]
        await asyncio.gather(*(backend.generate(ASK) for _ in range(4)))
        assert b.completions_served == 1  # one trial request, the rest elsewhere
        await asyncio.gather(*(backend.generate(ASK) for _ in range(4)))
        assert b.completions_served >= 2  # back in rotation


async def test_cool_down_doubles_while_a_replica_keeps_failing(pair: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, b = pair
    async with routed(a, b) as backend:
        router = backend.router
        replica = router.replicas[1]
        for expected in (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0):
            router.failed(replica, "refused")
            assert replica.down_until - router.clock() == expected
            router.clock.now = replica.down_until  # type: ignore[attr-defined]
        router.succeeded(replica)
        router.failed(replica, "refused")
        assert replica.down_until - router.clock() == 1.0


async def test_a_late_reply_to_a_call_sent_before_a_failure_does_not_bring_the_replica_back() -> None:
    """A server killed with replies already on the wire: those replies arrive after its calls failed."""
    release = asyncio.Event()

    class Dying(Transport):
        async def send(self, call: Call) -> Reply:
            if call.path == "/slow":
                await release.wait()  # answered before the crash, read after it
                return Reply(status=200, headers=httpx.Headers())
            raise BackendConnectionError("connection refused")

    class Healthy(Transport):
        async def send(self, call: Call) -> Reply:
            return Reply(status=200, headers=httpx.Headers())

    router = Router([("a", Healthy()), ("b", Dying())])
    router.clock = Clock()
    router.turn = 0  # the first call goes to b
    slow = asyncio.create_task(router.send(Call("POST", "/slow")))
    await asyncio.sleep(0)
    assert router.replicas[1].in_flight == 1
    router.turn = 0  # with a as busy as b, the tie goes to b again
    router.replicas[0].in_flight += 1
    with pytest.raises(BackendConnectionError):
        await router.send(Call("POST", "/fast"))
    router.replicas[0].in_flight -= 1
    release.set()
    await slow

    b = router.replicas[1]
    assert b.failures == 1 and b.down_until > router.clock()  # still skipped
    assert router.pick() is router.replicas[0]


async def test_a_replica_stopped_mid_run_is_skipped_and_the_run_completes(
    pair: tuple[FakeOpenAIServer, FakeOpenAIServer], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    caplog.set_level(logging.WARNING, logger="reasoner.backends.routing")
    async with routed(a, b, max_in_flight=8) as backend:
        requests = [asyncio.create_task(backend.generate(ASK)) for _ in range(60)]
        while b.completions_served < 5:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(b.stop)  # drops the requests it holds
        served_by_b = b.completions_served
        completions = await asyncio.gather(*requests)

    assert len(completions) == 60 and all(c.text for c in completions)
    assert a.completions_served + served_by_b >= 60
    assert a.completions_served > served_by_b
    assert f"replica {b.base_url} failed" in caplog.text


async def test_a_strategy_run_completes_when_a_replica_dies(
    pair: tuple[FakeOpenAIServer, FakeOpenAIServer], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    caplog.set_level(logging.WARNING, logger="reasoner.backends.routing")
    strategy = get_strategy("zero-shot-cot")
    async with routed(a, b) as backend:
        runs = [asyncio.create_task(strategy.solve(f"What is {i} plus {i}?", backend)) for i in range(12)]
        await asyncio.sleep(0.06)
        await asyncio.to_thread(b.stop)
        solutions = await asyncio.gather(*runs)

    assert [s.error for s in solutions] == [None] * 12
    assert f"replica {b.base_url} failed" in caplog.text


async def test_when_every_replica_is_down_the_usual_backoff_applies() -> None:
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        for server in (a, b):
            server.add_faults(*[Fault.status(503)] * 3)
        sleeps: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        async with routed(a, b, max_attempts=3) as backend:
            backend.retrying.sleep = fake_sleep
            with pytest.raises(ServerError, match="failed after 3 attempts"):
                await backend.generate(ASK)

    assert sleeps[0] == 0.0  # the first failure fails over to the other replica ...
    assert len(sleeps) == 2 and sleeps[1] > 0  # ... and when both are down, it backs off


async def test_comma_separated_urls_make_one_routed_backend(pair: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    a, b = pair
    backend = await open_backend(f"{a.base_url},{b.base_url}/")
    try:
        assert isinstance(backend, OpenAIBackend)
        assert backend.model == "fake-model"
        assert backend.base_url == f"{a.base_url},{b.base_url}"
        assert [r.url for r in backend.router.replicas] == [a.base_url, b.base_url]
    finally:
        await backend.aclose()
