"""`arith`: the calculator re-checks each step's equations (tools/arith_check.py), in a tool node:
traced, free, never a model call. It catches calculation slips, not a wrong setup."""

from __future__ import annotations

from collections.abc import Sequence

from reasoner.run import Run
from reasoner.tools.arith_check import check_steps
from reasoner.verdict import Verdict, Verifier, lines


class ArithVerifier(Verifier):
    def __init__(self, argument: str | None = None) -> None:
        if argument is not None:
            raise ValueError(f"the arith verifier takes no argument, got 'arith:{argument}'")
        self.spec = "arith"

    async def verify(self, run: Run, question: str, steps: Sequence[str]) -> Verdict:
        return check_steps(lines(steps), self.spec)
