"""Numbers as answers are written: reading them exactly, writing them canonically, comparing them.

Values are `Fraction`s, so "2/3", "0.1" and "2.0107e-06" are all held exactly and compared
without float error. Every numeral is bounded before it is converted (`MAX_NUMERAL_CHARS`,
`MAX_EXPONENT`): an answer no word problem has, such as a 5,000-digit number, reads as no
number instead of raising Python's int-string ValueError or building a gigabyte integer.

Correctness (`is_correct`) follows one documented rule, `Tolerance`:

1. the same number is right ("5" and "5.00", "3/4" and "0.75");
2. so is one within a relative tolerance `rel` of the gold (default 1e-9: float noise such
   as 0.30000000000000004, not a model's rounding);
3. so is a rounded answer: one written with d >= `places` decimal places (default 2) and at
   least `sig` significant figures (default 2) is right if it is the gold rounded to d places,
   that is, within half a unit of its last place ("0.67" for 2/3). The significant figures
   stop "0.00" passing for a gold of 0.0000005. Precision is read from the canonical answer,
   so trailing zeros do not count ("0.50" has one place).

Golds are taken as exact. A data file can set the rule per question, and a run from a flag,
both in `Tolerance.parse`'s syntax: "rel=1e-6,places=3,sig=2"; "places=off" turns rule 3 off.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_EXPONENT",
    "MAX_NUMERAL_CHARS",
    "Tolerance",
    "canonical",
    "fraction_of",
    "is_correct",
    "normalize_number",
    "number_value",
    "read_numeral",
]

#: Longer numerals (sign, digits, separators and exponent together) are not read as numbers.
MAX_NUMERAL_CHARS = 300
#: Scientific notation beyond 10**±300 (about the float range) is not read as a number.
MAX_EXPONENT = 300

MINUS = "-\u2212"  # ASCII hyphen-minus and the unicode minus sign
CURRENCY = "$€£"
# A sign may sit on either side of the currency symbol: "-$5" and "$-5" both occur.
PREFIX = rf"(?P<pre>[{MINUS}][{CURRENCY}]?|[{CURRENCY}][{MINUS}]?)?"
# Thousands groups must be complete, so "1,2,3" is a list of three numbers, not 123. An
# exponent needs its digits, so "2eggs" is no number in scientific notation.
BODY = (
    r"(?P<body>(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)?|\.\d+)"
    rf"(?:[eE][-+{MINUS[1]}]?\d+)?)"
)
_WHOLE_RE = re.compile(rf"\s*{PREFIX}{BODY}(?:/(?P<den>\d+))?\s*%?\.?\s*")


def read_numeral(pre: str | None, body: str) -> Fraction | None:
    """The exact value of a matched numeral, or None where it is out of bounds."""
    if len(body) > MAX_NUMERAL_CHARS:
        return None
    mantissa, _, exponent = body.replace(",", "").replace(MINUS[1], "-").lower().partition("e")
    if exponent and abs(int(exponent)) > MAX_EXPONENT:
        return None
    value = Fraction(mantissa)
    if exponent:
        value *= Fraction(10) ** int(exponent)
    negative = any(sign in (pre or "") for sign in MINUS)
    return -value if negative else value


def fraction_of(value: Fraction | None, denominator: str | None) -> Fraction | None:
    """`value` over a written denominator; None where that is too long to read, or zero."""
    if value is None or denominator is None:
        return value
    if len(denominator) > MAX_NUMERAL_CHARS or int(denominator) == 0:
        return None
    return value / int(denominator)


def canonical(value: Fraction) -> str:
    """A value's one written form: "5", "-0.25", "0.0000020107"; "2/3" where no decimal ends."""
    if value.denominator == 1:
        return str(value.numerator)  # also turns "-0" into "0"
    q = value.denominator
    twos = (q & -q).bit_length() - 1
    rest = q >> twos
    fives = 0
    while rest % 5 == 0:
        rest //= 5
        fives += 1
    if rest != 1:
        return f"{value.numerator}/{q}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // q
    digits = str(scaled).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}".rstrip("0")


def number_value(s: str) -> Fraction | None:
    """The value of a string holding one number and nothing else, or None."""
    if len(s) > 4 * MAX_NUMERAL_CHARS:  # the fullmatch below is linear, but why read a novel
        return None
    match = _WHOLE_RE.fullmatch(s)
    if match is None:
        return None
    return fraction_of(read_numeral(match["pre"], match["body"]), match["den"])


def normalize_number(s: str) -> str | None:
    """Canonical form of one number string, or None if `s` is not a number.

    Accepts a leading currency symbol, a (unicode) minus, thousands separators, scientific
    notation, a fraction, a trailing percent sign and a trailing sentence period:
    "$1,000.50" -> "1000.5", "5.00" -> "5", "50%" -> "50", "−3" -> "-3", "-0" -> "0",
    "2.0107e-06" -> "0.0000020107", "6/8" -> "0.75", "2/3" -> "2/3".
    """
    value = number_value(s)
    return None if value is None else canonical(value)


class Tolerance(BaseModel):
    """When an answer counts as the gold number: see the module's documentation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rel: float = Field(1e-9, ge=0, lt=1, description="relative tolerance")
    places: int | None = Field(2, ge=0, le=MAX_EXPONENT, description="fewest decimal places a rounded answer may have; None: no rounding rule")
    sig: int = Field(2, ge=1, le=MAX_NUMERAL_CHARS, description="fewest significant figures a rounded answer may have")

    @classmethod
    def parse(cls, spec: str) -> Tolerance:
        """From "rel=1e-6,places=3,sig=2" (any subset; the rest keep their defaults)."""
        fields: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, eq, raw = (s.strip() for s in item.partition("="))
            if not eq or key not in cls.model_fields:
                raise ValueError(f"tolerance {spec[:60]!r}: expected key=value with keys rel, places, sig")
            fields[key] = None if key == "places" and raw.lower() in ("off", "none") else raw
        return cls.model_validate(fields)

    def __str__(self) -> str:
        return f"rel={self.rel:g},places={'off' if self.places is None else self.places},sig={self.sig}"


DEFAULT_TOLERANCE = Tolerance()


def _precision(canonical_answer: str) -> tuple[int, int] | None:
    """(decimal places, significant figures) of a canonical decimal; None for a fraction."""
    if "/" in canonical_answer:
        return None
    digits = Decimal(canonical_answer).as_tuple()
    significant = len("".join(map(str, digits.digits)).lstrip("0"))
    return max(0, -int(digits.exponent)), significant


def is_correct(prediction: str | None, gold: str | None, tolerance: Tolerance | None = None) -> bool:
    """Whether `prediction` is the gold number under `tolerance`'s rule. None never matches."""
    if prediction is None or gold is None:
        return False
    answer, expected = normalize_number(prediction), number_value(gold)
    if answer is None or expected is None:
        return False
    value = Fraction(answer)
    rule = tolerance or DEFAULT_TOLERANCE
    if value == expected or abs(value - expected) <= Fraction(repr(rule.rel)) * abs(expected):
        return True
    precision = _precision(answer)
    if rule.places is None or precision is None:
        return False
    places, significant = precision
    return places >= rule.places and significant >= rule.sig and abs(value - expected) * 2 * 10**places <= 1
