"""A strategy with options in one string: `self-consistency:samples=8,stopping=beta`.

The gateway reads it from a model name (`self-consistency:samples=8/MODEL`) and `reasoner bench -s`
from its strategy flags. Values stay text here; the strategy's pydantic model converts and checks
them, so `samples=8` becomes an int and `samples=lots` is refused naming `samples`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from reasoner.strategy import available


class VariantError(ValueError):
    """A variant string that names no strategy or a bad option; `option` is the option at fault
    (None when the strategy name or the string's shape is wrong)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME` or `NAME:key=value,key=value` as (strategy name, validated options).

    Only the options written are returned (with the types the strategy gives them), so a caller
    can merge them over defaults of its own.
    """
    name, _, rest = text.strip().partition(":")
    strategies = available()
    if name not in strategies:
        known = ", ".join(sorted(strategies))
        raise VariantError(f"unknown strategy {name!r} in {text!r}; known strategies: {known}")
    raw: dict[str, str] = {}
    for item in rest.split(",") if rest else []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise VariantError(f"option {item.strip()!r} in {text!r} is not KEY=VALUE", option=key or None)
        if key in raw:
            raise VariantError(f"option {key!r} is given twice in {text!r}", option=key)
        raw[key] = value.strip()
    return name, validate_options(name, raw)


def validate_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` as strategy `name` types them; the first bad one raises `VariantError` naming it."""
    cls = strategies_or_error(name)
    unknown = sorted(set(options) - set(cls.model_fields))
    if unknown:
        known = ", ".join(sorted(cls.model_fields))
        raise VariantError(f"strategy {name!r} has no option {unknown[0]!r}; its options: {known}", option=unknown[0])
    try:
        instance = cls(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = str(first["loc"][0]) if first.get("loc") else None
        value = options.get(option) if option else None
        raise VariantError(f"strategy {name!r} option {option!r}={value!r}: {first['msg']}", option=option) from None
    return {key: getattr(instance, key) for key in options}


def strategies_or_error(name: str) -> Any:
    strategies = available()
    if name not in strategies:
        raise VariantError(f"unknown strategy {name!r}; known strategies: {', '.join(sorted(strategies))}")
    return strategies[name]
