"""The embedded model's default thread count leaves cores free (llama.cpp stalls when one is taken)."""

from __future__ import annotations

import pytest

from reasoner.backends import local


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (4, 2), (16, 8), (64, 8)])
def test_default_threads_is_half_the_usable_cpus(monkeypatch: pytest.MonkeyPatch, cpus: int, threads: int) -> None:
    monkeypatch.delenv("REASONER_THREADS", raising=False)
    monkeypatch.setattr(local.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert local._default_threads() == threads


def test_reasoner_threads_overrides_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONER_THREADS", "3")
    assert local._default_threads() == 3
    monkeypatch.setenv("REASONER_THREADS", "two")
    with pytest.raises(ValueError, match="REASONER_THREADS must be a whole number"):
        local._default_threads()
