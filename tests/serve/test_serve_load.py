"""The gateway under load: a client that hangs up cancels its strategy and every upstream request
it had in flight; strategy runs are bounded and the rest queue."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from serve_support import MODEL, QUESTION, gateway, responder, wait_for  # noqa: E402

from reasoner.backends.http import OpenAIBackend  # noqa: E402
from reasoner.serve import BackgroundGateway  # noqa: E402
from reasoner.testing.fake_openai import FakeOpenAIServer  # noqa: E402


def no_n(backend: OpenAIBackend) -> None:
    backend.supports_n = False  # so self-consistency sends one upstream request per sample


#: The upstream answers each request after 30 s: every test hangs up long before.
pytestmark = pytest.mark.server(models=MODEL, responder=responder, latency_s=30)


@pytest.fixture(scope="module")
def gw(server: FakeOpenAIServer) -> Iterator[BackgroundGateway]:
    with gateway(server, tune=no_n, backend={"deadline_s": 60}) as running:
        yield running


def send(gw: BackgroundGateway, data: dict[str, object]) -> socket.socket:
    """A raw connection that has sent a chat request: closing it is a client hanging up."""
    body = json.dumps(data).encode()
    conn = socket.create_connection(gw.sock.getsockname()[:2], timeout=10)
    conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    return conn


def health(gw: BackgroundGateway) -> dict[str, int]:
    return httpx.get(gw.base_url.removesuffix("/v1") + "/health", timeout=5).json()  # type: ignore[no-any-return]


def all_given_back(gw: BackgroundGateway, server: FakeOpenAIServer) -> None:
    """Nothing in flight upstream, no strategy running, no plain request's place held. A guard only:
    what it took says nothing; the counts the caller checks afterwards prove the cancellation."""
    wait_for(lambda: server.in_flight == 0, timeout=10)
    wait_for(lambda: health(gw)["running"] == 0, timeout=10)
    wait_for(lambda: health(gw)["passthrough"]["open"] == 0, timeout=10)  # its place is given back


@pytest.mark.parametrize("model", [f"self-consistency:samples=4,inner=few-shot-cot/{MODEL}", MODEL])
def test_a_client_that_hangs_up_cancels_every_upstream_request(gw: BackgroundGateway, server: FakeOpenAIServer, model: str) -> None:
    expected = 4 if model != MODEL else 1
    served = server.completions_served
    with send(gw, {"model": model, "messages": QUESTION}):
        wait_for(lambda: server.in_flight >= expected, timeout=10)
        asked = len(server.completion_requests())
    # The client is gone (its connection closed, no answer read). Every upstream request sleeps 30 s
    # before it is answered, so one that left in_flight with nothing served was cancelled, not finished.
    all_given_back(gw, server)
    assert server.completions_served == served  # not one of them was answered
    assert len(server.completion_requests()) == asked  # nor retried, nor replaced by another


@pytest.mark.parametrize("model", [f"self-consistency:samples=4,inner=few-shot-cot/{MODEL}", MODEL])
def test_a_streaming_client_that_hangs_up_cancels_every_upstream_request(gw: BackgroundGateway, server: FakeOpenAIServer, model: str) -> None:
    expected = 4 if model != MODEL else 1
    served = server.completions_served
    with send(gw, {"model": model, "messages": QUESTION, "stream": True}) as conn:
        wait_for(lambda: server.in_flight >= expected, timeout=10)
        if model != MODEL:  # a strategy's stream starts at once, before any sample is done
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            assert server.completions_served == served
        asked = len(server.completion_requests())
    all_given_back(gw, server)
    assert server.completions_served == served  # cancelled, every one, not answered
    assert len(server.completion_requests()) == asked


def test_strategy_runs_are_bounded_and_the_rest_queue() -> None:
    with FakeOpenAIServer(MODEL, responder=responder, latency_s=0.3) as upstream, gateway(upstream, max_runs=2) as gw:
        results: list[httpx.Response] = []
        body = {"model": f"few-shot-cot/{MODEL}", "messages": QUESTION, "stream": True}

        def ask() -> None:
            results.append(httpx.post(f"{gw.base_url}/chat/completions", json=body, timeout=30))

        threads = [threading.Thread(target=ask) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [r.status_code for r in results] == [200] * 5
        assert upstream.peak_in_flight == 2 and upstream.completions_served == 5
        progress = [json.loads(line.split(" ", 2)[2]) for r in results for line in r.text.splitlines() if line.startswith(": reasoner.progress")]
        assert any(event["event"] == "queued" for event in progress)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_beyond_the_queue_a_run_is_refused_at_once_with_a_retry_after(stream: bool) -> None:
    with FakeOpenAIServer(MODEL, responder=responder, latency_s=1.5) as upstream, gateway(upstream, max_runs=1, max_waiting=1) as gw:
        # Each answer with what the upstream had served when it came (a run makes one upstream call).
        results: list[tuple[int, httpx.Response]] = []
        body = {"model": f"few-shot-cot/{MODEL}", "messages": QUESTION, "stream": stream}

        def ask() -> None:
            response = httpx.post(f"{gw.base_url}/chat/completions", json=body, timeout=30)
            results.append((upstream.completions_served, response))

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        # The queue is full: one run has its call at the upstream (1.5 s there), the other waits its turn.
        wait_for(lambda: upstream.in_flight == 1 and health(gw)["running"] + health(gw)["waiting"] == 2, timeout=10)
        ask()
        for thread in threads:
            thread.join(30)
        served_then, refused = results[0]
        # Refused without waiting: the 503 came while the run ahead was still at the upstream, before
        # either run was answered; queued, it would have been answered only after both.
        assert refused.status_code == 503 and served_then == 0
        assert refused.json()["error"]["code"] == "overloaded" and "--max-waiting 1" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert sorted(r.status_code for _, r in results) == [200, 200, 503]
        assert upstream.completions_served == 2 and health(gw)["refused"] == 1
        ask()  # room again once the queue has drained
        assert results[-1][1].status_code == 200


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_plain_requests_beyond_the_backend_bound_and_the_queue_are_refused(stream: bool) -> None:
    with FakeOpenAIServer(MODEL, responder=responder, latency_s=1.5) as upstream, \
            gateway(upstream, max_waiting=1, backend={"max_in_flight": 1}) as gw:  # fmt: skip
        results: list[httpx.Response] = []
        body = {"model": MODEL, "messages": QUESTION, "stream": stream}

        def ask() -> None:
            results.append(httpx.post(f"{gw.base_url}/chat/completions", json=body, timeout=30))

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        wait_for(lambda: health(gw)["passthrough"]["open"] == 2, timeout=10)  # one in flight, one waiting
        ask()
        for thread in threads:
            thread.join(30)
        refused = results[0]
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["retry-after"] == "1"
        assert sorted(r.status_code for r in results) == [200, 200, 503]
        assert upstream.completions_served == 2
        assert health(gw)["passthrough"] == {"open": 0, "refused": 1}  # every response ended gave its place back


def test_a_streamed_strategy_sends_something_at_once_and_keeps_the_line_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    from reasoner.serve import reasoning

    monkeypatch.setattr(reasoning, "HEARTBEAT_S", 0.1)
    with FakeOpenAIServer(MODEL, responder=responder, latency_s=1.5) as upstream, gateway(upstream) as gw:
        body = {"model": f"few-shot-cot/{MODEL}", "messages": QUESTION, "stream": True}
        with httpx.stream("POST", f"{gw.base_url}/chat/completions", json=body, timeout=10) as response:
            lines = response.iter_lines()
            first = next(lines)
            served_then = upstream.completions_served  # what the upstream had answered when the first line came
            rest = list(lines)
    # The first line came before the strategy's one upstream call was answered: it is sent at once,
    # not held back until the run ends.
    assert served_then == 0 and upstream.completions_served == 1
    assert first.startswith("data:") and '"role":"assistant"' in first
    assert any(line.startswith(": reasoner.progress") and '"heartbeat"' in line for line in rest)
