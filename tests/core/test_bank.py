"""The sample bank: keying by request and sample index, the n-split top-up, modes, a kill while recording."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from reasoner.backends.base import Backend
from reasoner.bank import BankError, BankMiss, SampleBank
from reasoner.types import Choice, Completion, GenerationRequest


class SeedEcho(Backend):
    """Sample i of a request with seed s is "<prompt>#<s+i>" (a fresh random number without a seed)."""

    name = "seed-echo"

    def __init__(self, supports_n: bool = True, delay_s: float = 0.0) -> None:
        super().__init__(max_in_flight=64)
        self.supports_n = supports_n
        self.delay_s = delay_s
        self.requests: list[GenerationRequest] = []
        self.unseeded = 1000

    async def _generate(self, request: GenerationRequest) -> Completion:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if request.seed is None:
            first, self.unseeded = self.unseeded, self.unseeded + request.n
        else:
            first = request.seed
        texts = [f"{request.as_text()}#{first + i}" for i in range(request.n)]
        return Completion(choices=[Choice(text=t, completion_tokens=3) for t in texts], prompt_tokens=10, completion_tokens=3 * len(texts))


def ask(prompt: str = "q", n: int = 1, seed: int | None = 0, **kw: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, n=n, seed=seed, temperature=0.7, **kw)  # type: ignore[arg-type]


def texts(c: Completion) -> list[str]:
    return [ch.text for ch in c.choices]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_each_sample_index_is_its_own_recorded_sample(tmp_path: Path) -> None:
    inner = SeedEcho()
    bank = SampleBank(inner, tmp_path / "b.bank")
    first = run(bank.generate(ask(n=4)))
    assert texts(first) == ["q#0", "q#1", "q#2", "q#3"]
    # The same request again, and one of its samples alone (seed 2, n 1): replayed, no new call.
    assert texts(run(bank.generate(ask(n=4)))) == texts(first)
    assert texts(run(bank.generate(ask(n=1, seed=2)))) == ["q#2"]
    assert len(inner.requests) == 1
    # Another prompt or another parameter is another key, with samples of its own.
    assert texts(run(bank.generate(ask("other", n=2)))) == ["other#0", "other#1"]
    assert texts(run(bank.generate(GenerationRequest(prompt="q", seed=0, temperature=0.9)))) == ["q#0"]
    assert len(inner.requests) == 3
    assert bank.counts() == (3, 7)
    assert bank.usage.recorded_calls == 2 and bank.usage.new_calls == 3
    assert bank.usage.recorded_samples == 5 and bank.usage.new_samples == 7


def test_more_samples_than_recorded_asks_once_for_the_missing_count(tmp_path: Path) -> None:
    inner = SeedEcho()
    bank = SampleBank(inner, tmp_path / "b.bank")
    run(bank.generate(ask(n=5)))
    inner.requests.clear()
    topped = run(bank.generate(ask(n=8)))
    assert [(r.n, r.seed) for r in inner.requests] == [(3, 5)]
    assert texts(topped) == [f"q#{i}" for i in range(8)]  # what a live n=8 request returns
    assert bank.usage.recorded_samples == 5 and bank.usage.new_samples == 8


def test_a_backend_without_n_gets_one_seeded_request_per_missing_sample(tmp_path: Path) -> None:
    inner = SeedEcho(supports_n=False)
    bank = SampleBank(inner, tmp_path / "b.bank")
    run(bank.generate(ask(n=2)))
    inner.requests.clear()
    assert texts(run(bank.generate(ask(n=4)))) == ["q#0", "q#1", "q#2", "q#3"]
    assert sorted((r.n, r.seed) for r in inner.requests) == [(1, 2), (1, 3)]


def test_unseeded_requests_take_the_next_indexes_and_replay_in_order(tmp_path: Path) -> None:
    path = tmp_path / "b.bank"
    bank = SampleBank(SeedEcho(), path)
    a, b = run(bank.generate(ask(n=2, seed=None))), run(bank.generate(ask(n=2, seed=None)))
    assert len(set(texts(a) + texts(b))) == 4  # repeated unseeded calls are distinct samples
    bank.close()
    inner = SeedEcho()
    again = SampleBank(inner, path, mode="replay")
    assert texts(run(again.generate(ask(n=3, seed=None)))) == texts(a) + texts(b)[:1]
    assert inner.requests == []


def test_replay_only_names_the_missing_sample(tmp_path: Path) -> None:
    path = tmp_path / "b.bank"
    SampleBank(SeedEcho(), path).close()
    inner = SeedEcho()
    bank = SampleBank(inner, path, mode="replay")
    with pytest.raises(BankMiss, match=r"no sample 0\.\.2 \(3 samples\) of request [0-9a-f]{12} \(prompt 'the question'\)"):
        run(bank.generate(ask("the question", n=3)))
    assert inner.requests == []


def test_refresh_asks_again_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "b.bank"
    bank = SampleBank(SeedEcho(), path)
    run(bank.generate(ask(n=2, seed=None)))
    bank.close()
    inner = SeedEcho()
    inner.unseeded = 5000
    fresh = SampleBank(inner, path, mode="refresh")
    assert texts(run(fresh.generate(ask(n=2, seed=None)))) == ["q#5000", "q#5001"]
    fresh.close()
    replay = SampleBank(SeedEcho(), path, mode="replay")
    assert texts(run(replay.generate(ask(n=2, seed=None)))) == ["q#5000", "q#5001"]


def test_bad_mode_and_a_file_that_is_not_a_bank(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="unknown bank mode 'replay-only'"):
        SampleBank(SeedEcho(), tmp_path / "b.bank", mode="replay-only")  # type: ignore[arg-type]
    junk = tmp_path / "junk.bank"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(BankError, match="junk.bank: not a sample bank"):
        SampleBank(SeedEcho(), junk)


def test_concurrent_tasks_and_threads_share_one_bank(tmp_path: Path) -> None:
    inner = SeedEcho(delay_s=0.001)
    bank = SampleBank(inner, tmp_path / "b.bank")

    async def many(offset: int) -> list[list[str]]:
        # The same seeded request from several tasks at once, and distinct ones.
        jobs = [bank.generate(ask(f"p{i % 7}", n=3, seed=offset)) for i in range(40)]
        return [texts(c) for c in await asyncio.gather(*jobs)]

    results: list[list[list[str]]] = []
    threads = [threading.Thread(target=lambda o=o: results.append(asyncio.run(many(o)))) for o in (0, 0, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for batch in results:
        for got in batch:
            prompt, first = got[0].split("#")
            assert got == [f"{prompt}#{int(first) + k}" for k in range(3)]
    assert bank.counts() == (7, 7 * 6)  # indexes 0..5 of each of the 7 prompts, each once


def test_text_is_stored_compressed(tmp_path: Path) -> None:
    path = tmp_path / "b.bank"
    bank = SampleBank(SeedEcho(), path)
    long_prompt = "Natalia sold clips to 48 of her friends. " * 200
    run(bank.generate(ask(long_prompt, n=1)))
    bank.close()
    with sqlite3.connect(path) as db:
        (blob,) = db.execute("SELECT choice FROM samples").fetchone()
    assert len(blob) < len(long_prompt) / 10


def test_usage_line_says_a_replayed_run_cost_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.bank"
    run(SampleBank(SeedEcho(), path).generate(ask(n=4)))
    replay = SampleBank(SeedEcho(), path, mode="replay")
    run(replay.generate(ask(n=4)))
    assert replay.usage.new_calls == 0 and replay.usage.new_tokens == 0
    assert replay.usage.line().startswith("bank: 0 new model calls (0 samples, 0 tokens); 4 recorded samples replayed")


RECORDER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    from test_bank import SeedEcho, ask
    from reasoner.bank import SampleBank

    async def main():
        bank = SampleBank(SeedEcho(delay_s=0.002), {path!r})
        for i in range(100000):
            await bank.generate(ask("kill me", n=1, seed=i))
            print(i, flush=True)

    asyncio.run(main())
    """
)


def test_a_kill_while_recording_leaves_a_bank_that_replays_what_was_recorded(tmp_path: Path) -> None:
    path = tmp_path / "killed.bank"
    script = RECORDER.format(tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done = -1
    deadline = time.monotonic() + 60
    while done < 30 and time.monotonic() < deadline:
        done = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done >= 30
    inner = SeedEcho()
    bank = SampleBank(inner, path, mode="replay")
    # Every sample whose call returned before the kill is there (and perhaps one more in flight).
    assert texts(run(bank.generate(ask("kill me", n=done + 1, seed=0)))) == [f"kill me#{i}" for i in range(done + 1)]
    assert inner.requests == []


def test_solve_with_a_bank_replays_the_second_time(tmp_path: Path) -> None:
    import reasoner

    inner = SeedEcho()
    first = reasoner.solve("q", "self-consistency", model=inner, bank=tmp_path / "b.bank", samples=3, seed=0, raise_on_error=False)
    asked = len(inner.requests)
    assert asked >= 1
    again = reasoner.solve("q", "self-consistency", model=inner, bank=tmp_path / "b.bank", bank_mode="replay", samples=3, seed=0,
                           raise_on_error=False)
    assert len(inner.requests) == asked  # nothing new asked of the model
    assert again.details["answers"] == first.details["answers"] and again.text == first.text
