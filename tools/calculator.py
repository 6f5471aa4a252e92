"""A calculator for arithmetic a model writes: exact where it can be, bounded everywhere.

The expression is read by a small recursive-descent parser over our own tokens, never by
`eval`, so only numbers, operators and a few named functions can ever run.

Syntax:
- `+ - * / // % **`, parentheses, unary `+`/`-`, decimals and `1e3` exponents.
- `^` is power, as in most calculators and word problems (Python's XOR has no use here).
- Percent: `%` right after a number or `)` and followed by nothing, `)`, `,` or an operator
  means "/100" (`50%` is 0.5, `200 * 15%` is 30); `x% of y` is x/100*y. Followed by an
  operand it is modulo (`7 % 3` is 1); write `7 % (-3)` for modulo by a negative number.
- Thousands separators: `1,000` and `1,234,567` (groups of exactly three digits) read as
  one number outside function calls. Inside a call they are rejected as ambiguous
  (`max(1,000)`): write `1000`, or put a space after an argument comma.
- Functions: abs, round (half away from zero, optional digits), min, max, sqrt, floor,
  ceil; constants pi and e. `×`, `÷` and `−` are read as `*`, `/` and `-`.

Numbers are Fractions, so `0.1 + 0.2` is exactly 0.3 and `1/3*3` is 1; sqrt, pi, e and
fractional powers make floats. Results print as integers without `.0`, exact decimals where
short, else 15 significant digits.

Limits (each rejection is a CalculatorError with a readable message): 500 characters,
nesting depth 50, |result| <= 1e100 checked after every step, and a power's size is
estimated from logarithms before it is computed, so `9**9**9**9` or `10**100000` fail at
once instead of hanging.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from reasoner.tools.base import tool

MAX_LENGTH = 500
MAX_DEPTH = 50
MAX_MAGNITUDE = 10**100
MAX_ROUND_DIGITS = 100
# Denominators past this many bits (about 300 digits) make every later step slow for no
# visible gain, so such values continue as floats.
MAX_DENOMINATOR_BITS = 1000

Number = Fraction | float


class CalculatorError(ValueError):
    """An expression the calculator refuses, with a message meant for the model."""


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "name", "op", "pct" or "end"
    text: str
    pos: int  # 1-based column, for messages
    grouped: bool = False  # a number written with thousands separators


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d|,\d)|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>\*\*|//|[-+*/%^(),])
    """,
    re.VERBOSE,
)
_OPERAND_START = re.compile(r"\s*(?:[\d.(]|[A-Za-z_])")
_OF = re.compile(r"\s*of\b")
_LOOKALIKES = str.maketrans({"×": "*", "÷": "/", "−": "-"})


def tokenize(expression: str) -> list[Token]:
    text = expression.translate(_LOOKALIKES)
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise CalculatorError(f"unexpected character {text[pos]!r} at column {pos + 1}")
        kind, value = match.lastgroup or "", match.group()
        end = match.end()
        if kind == "op" and value == "%":
            # Percent vs modulo is decided by what follows: an operand makes it modulo.
            of = _OF.match(text, end)
            if of:
                tokens += [Token("pct", "%", pos + 1), Token("op", "*", end + 1)]
                end = of.end()
            elif _OPERAND_START.match(text, end):
                tokens.append(Token("op", "%", pos + 1))
            else:
                tokens.append(Token("pct", "%", pos + 1))
        elif kind != "space":
            tokens.append(Token(kind, value, pos + 1, grouped=kind == "num" and "," in value))
        pos = end
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _number(token: Token) -> Fraction:
    text = token.text.replace(",", "")
    _, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > 400:
        raise CalculatorError(f"number {token.text} at column {token.pos} is out of range")
    return Fraction(text)


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise CalculatorError("sqrt of a negative number")
    if isinstance(x, Fraction):
        num, den = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if num * num == x.numerator and den * den == x.denominator:
            return Fraction(num, den)  # perfect squares stay exact
    return math.sqrt(x)


def _round(x: Number, digits: Number = 0) -> Number:
    if digits != int(digits) or abs(digits) > MAX_ROUND_DIGITS:
        raise CalculatorError(f"round() digits must be a whole number up to {MAX_ROUND_DIGITS}")
    scale = Fraction(10) ** int(digits)
    # Half away from zero, the rounding people expect (Python's round() is half-to-even).
    scaled = abs(Fraction(x)) * scale
    rounded = Fraction(math.floor(scaled + Fraction(1, 2))) / scale
    return rounded if x >= 0 else -rounded


def _floor(x: Number) -> Number:
    return Fraction(math.floor(x))


def _ceil(x: Number) -> Number:
    return Fraction(math.ceil(x))


FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    # name: (function, min args, max args)
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    # min and max of one number would be a no-op, and Python reads a lone argument as an iterable.
    "min": (min, 2, 50),
    "max": (max, 2, 50),
    "sqrt": (_sqrt, 1, 1),
    "floor": (_floor, 1, 1),
    "ceil": (_ceil, 1, 1),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def _check(value: Number) -> Number:
    if isinstance(value, complex):
        raise CalculatorError("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is too large (limit 1e100)")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("the result is too large (limit 1e100)")
    if isinstance(value, Fraction) and value.denominator.bit_length() > MAX_DENOMINATOR_BITS:
        return float(value)
    return value


def _power(base: Number, exponent: Number) -> Number:
    if base == 0:
        if exponent < 0:
            raise CalculatorError("division by zero (0 to a negative power)")
        return Fraction(1) if exponent == 0 else Fraction(0)
    if exponent == 0 or base == 1:
        return Fraction(1)
    whole = isinstance(exponent, Fraction) and exponent.denominator == 1
    if base == -1 and whole:
        return Fraction(-1 if exponent.numerator % 2 else 1)
    # Estimate the size from logarithms first: computing 9**387420489 just to reject it would hang.
    if exponent * math.log10(abs(base)) > 100:
        raise CalculatorError("the result is too large (limit 1e100)")
    if not whole and base < 0:
        raise CalculatorError("a negative number to a fractional power is not a real number")
    if whole and isinstance(base, Fraction):
        bits = max(base.numerator.bit_length(), base.denominator.bit_length())
        # Exact only while the digits stay few: (1.0000001)**10**9 is small but has 7e9 digits.
        if abs(exponent) * bits <= 20_000:
            return base ** int(exponent)
    return float(base) ** float(exponent)


def _binary(op: str, left: Number, right: Number) -> Number:
    if op in ("/", "//", "%") and right == 0:
        raise CalculatorError("division by zero")
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        return left / right
    if op == "//":
        return Fraction(left // right)
    if op == "%":
        return left % right
    return _power(left, right)


class _Parser:
    """Grammar, loosest first:
    sum     := product (("+" | "-") product)*
    product := signed (("*" | "/" | "//" | "%") signed)*
    signed  := ("+" | "-")* power
    power   := postfix (("**" | "^") signed)?     (right-assoc; -2**2 is -4)
    postfix := atom "%"*                           (percent)
    atom    := number | constant | name "(" sum ("," sum)* ")" | "(" sum ")"
    """

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.in_call = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        if self.token.text != text or self.token.kind != "op":
            raise self.unexpected(f"expected {text!r}")
        self.i += 1

    def unexpected(self, hint: str = "") -> CalculatorError:
        token = self.token
        what = "end of expression" if token.kind == "end" else repr(token.text)
        if token.text == ",":
            hint = hint or "commas only group thousands (1,000) or separate function arguments"
        return CalculatorError(f"unexpected {what} at column {token.pos}" + (f": {hint}" if hint else ""))

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalculatorError(f"the expression is nested too deeply (limit {MAX_DEPTH})")

    def parse(self) -> Number:
        value = self.sum()
        if self.token.kind != "end":
            raise self.unexpected()
        return value

    def sum(self) -> Number:
        value = self.product()
        while self.token.kind == "op" and self.token.text in ("+", "-"):
            op = self.take().text
            value = _check(_binary(op, value, self.product()))
        return value

    def product(self) -> Number:
        value = self.signed()
        while self.token.kind == "op" and self.token.text in ("*", "/", "//", "%"):
            op = self.take().text
            value = _check(_binary(op, value, self.signed()))
        return value

    def signed(self) -> Number:
        negative = False
        while self.token.kind == "op" and self.token.text in ("+", "-"):
            negative ^= self.take().text == "-"
        value = self.power()
        return -value if negative else value

    def power(self) -> Number:
        base = self.postfix()
        if self.token.kind == "op" and self.token.text in ("**", "^"):
            self.take()
            self.nested()
            exponent = self.signed()
            self.depth -= 1
            return _check(_power(base, exponent))
        return base

    def postfix(self) -> Number:
        value = self.atom()
        while self.token.kind == "pct":
            self.take()
            value = value / 100
        return value

    def atom(self) -> Number:
        token = self.token
        if token.kind == "num":
            if token.grouped and self.in_call:
                raise CalculatorError(
                    f"{token.text!r} at column {token.pos} is ambiguous inside a function call: "
                    "write the number without commas, or put a space after an argument comma"
                )
            self.take()
            return _check(_number(token))
        if token.kind == "name":
            return self.name()
        if token.kind == "op" and token.text == "(":
            self.take()
            self.nested()
            value = self.sum()
            self.expect(")")
            self.depth -= 1
            return value
        raise self.unexpected()

    def name(self) -> Number:
        token = self.take()
        name = token.text.lower()
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name not in FUNCTIONS:
            known = ", ".join([*FUNCTIONS, *CONSTANTS])
            raise CalculatorError(f"unknown name {token.text!r} at column {token.pos}; known: {known}")
        fn, least, most = FUNCTIONS[name]
        self.expect("(")
        self.nested()
        self.in_call += 1
        args = [self.sum()]
        while self.token.kind == "op" and self.token.text == ",":
            self.take()
            args.append(self.sum())
        self.expect(")")
        self.in_call -= 1
        self.depth -= 1
        if not least <= len(args) <= most:
            count = str(least) if least == most else f"{least} to {most}"
            raise CalculatorError(f"{name}() takes {count} argument(s), got {len(args)}")
        return _check(fn(*args))


def format_number(value: Number) -> str:
    """Integers without `.0`, short exact decimals exactly, anything else to 15 digits."""
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        twos, rest = _strip(value.denominator, 2)
        fives, rest = _strip(rest, 5)
        if rest == 1:  # only 2s and 5s divide the denominator: a terminating decimal
            places = max(twos, fives)
            digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
            text = f"{'-' if value < 0 else ''}{digits[:-places]}.{digits[-places:]}"
            if len(text) <= 32:
                return text
        value = float(value)
    text = f"{value:.15g}"
    return "0" if text == "-0" else text


def _strip(n: int, factor: int) -> tuple[int, int]:
    """How many times `factor` divides n, and what is left."""
    count = 0
    while n % factor == 0:
        n //= factor
        count += 1
    return count, n


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly and return the result as a clean number string.

    Raises CalculatorError with a readable reason for anything it refuses."""
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"the expression is too long ({len(expression)} characters, limit {MAX_LENGTH})")
    if not expression.strip():
        raise CalculatorError("empty expression")
    try:
        return format_number(_Parser(tokenize(expression)).parse())
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except (OverflowError, RecursionError):
        raise CalculatorError("the result is too large (limit 1e100)") from None


calculator = tool(
    "calculator",
    "Evaluate arithmetic exactly: + - * / // % ** (or ^), parentheses, 15% as 0.15, "
    "abs, round, min, max, sqrt, floor, ceil, pi, e. Example: (12.5 * 4) + 20% of 50",
)(calculate)
