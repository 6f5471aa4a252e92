"""The library's front door: `solve` and `asolve`."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from reasoner.backends.base import Backend
from reasoner.backends.spec import open_backend
from reasoner.bank import BankMode, SampleBank
from reasoner.strategy import Strategy, get_strategy
from reasoner.types import Solution


class SolveError(Exception):
    """The strategy could not reach an answer; `.solution` keeps everything that was computed."""

    def __init__(self, solution: Solution) -> None:
        super().__init__(solution.error)
        self.solution = solution


async def asolve(
    question: str,
    strategy: str | Strategy = "few-shot-cot",
    model: str | Backend = "local",
    *,
    model_name: str | None = None,
    raise_on_error: bool = True,
    bank: str | os.PathLike[str] | None = None,
    bank_mode: BankMode = "record",
    **options: Any,
) -> Solution:
    """Answer `question` with a strategy (a name or an instance) on a model (a spec or a backend).

    `options` are the strategy's own (e.g. `samples=16` for self-consistency). A backend you pass
    stays open; one opened from a spec is closed before returning. With `bank` (a file path) every
    model call goes through a `reasoner.bank.SampleBank` there, in `bank_mode`.
    """
    chosen = get_strategy(strategy, **options)
    backend = model if isinstance(model, Backend) else await open_backend(model, model_name=model_name)
    banked = SampleBank(backend, bank, bank_mode) if bank is not None else None
    try:
        solution = await chosen.solve(question, banked or backend)
    finally:
        if banked is not None:
            banked.close()
        if not isinstance(model, Backend):
            await backend.aclose()
    if solution.error and raise_on_error:
        raise SolveError(solution)
    return solution


def solve(question: str, strategy: str | Strategy = "few-shot-cot", model: str | Backend = "local", **kwargs: Any) -> Solution:
    """Blocking form of `asolve`, for scripts and notebooks without a running event loop."""
    return asyncio.run(asolve(question, strategy, model, **kwargs))
