"""The calculator under random input: only its own error type, and never slow."""

from __future__ import annotations

import gc
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from reasoner.tools.calculator import CalculatorError, calculate

# Pieces an arithmetic expression is made of, so the fuzzer reaches deep into the parser
# instead of failing at the first character.
TOKENS = st.sampled_from(
    ["1", "0", "9", "12.5", ".5", "1,000", "-", "+", "*", "/", "//", "%", "**", "^", "(", ")", " ",
     "sqrt(", "round(", "abs(", "min(", "max(", ",", "of", "pi", "e", "x", "1e9", "99999999"]
)


def cpu_seconds(expression: str) -> float:
    """CPU time of this thread for one call, not wall time (a descheduled test would otherwise
    "take" 100 ms without the calculator doing any work), with the garbage collector paused (a
    collection of the whole test session's heap is not the calculator's work either)."""
    gc.disable()
    try:
        start = time.thread_time()
        try:
            result = calculate(expression)
        except CalculatorError:
            pass
        else:
            assert isinstance(result, str) and result
        return time.thread_time() - start
    finally:
        gc.enable()


def check(expression: str) -> None:
    # The calculator's work is deterministic: a second measurement only removes the machine's noise.
    assert min(cpu_seconds(expression), cpu_seconds(expression)) < 0.1, f"{expression!r} took too long"


@settings(max_examples=1500, deadline=None)
@given(st.lists(TOKENS, max_size=40).map("".join))
def test_token_soup_never_crashes_or_hangs(expression: str) -> None:
    check(expression)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_or_hangs(expression: str) -> None:
    check(expression)


@settings(max_examples=300, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6))
def test_agrees_with_python_on_integer_arithmetic(a: int, b: int) -> None:
    assert calculate(f"{a} + {b}") == str(a + b)
    assert calculate(f"{a} * ({b})") == str(a * b)
    assert calculate(f"{a} - ({b})") == str(a - b)
