"""Which strategy a request asks for: from its model name (`self-consistency:samples=8/MODEL`) or
its `reasoner` field; a plain model name is a passthrough."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasoner.serve.errors import APIError, bad_request
from reasoner.serve.schemas import ReasonerField
from reasoner.strategy import available
from reasoner.variants import VariantError, parse_variant, validate_options


@dataclass(frozen=True)
class Route:
    model: str  # the served model the client named
    strategy: str | None = None  # None: a passthrough
    options: dict[str, Any] = field(default_factory=dict)


def resolve(name: str, extra: ReasonerField | None, served: set[str]) -> Route:
    """The route for model `name`; `served` are the model names this gateway answers to."""
    strategy: str | None = None
    options: dict[str, Any] = {}
    model = name
    head, slash, tail = _split(name, served)
    if name not in served and slash:
        if head.partition(":")[0] in available() or ":" in head or tail in served:
            strategy, options = _variant(head, "model")
            model = tail
    if model not in served:
        listed = ", ".join(sorted(served))
        raise APIError(404, f"model {name!r} is not served here; models: {listed} (a strategy goes first: "
                       f"self-consistency/{next(iter(sorted(served)))})", param="model", code="model_not_found")  # fmt: skip
    if extra is not None and extra.strategy is not None:
        named, more = _variant(extra.strategy, "reasoner.strategy")
        if strategy is not None and named != strategy:
            raise bad_request(f"the model name asks for {strategy!r} and reasoner.strategy for {named!r}; give one",
                              "reasoner.strategy")  # fmt: skip
        strategy, options = named, {**options, **more}
    if extra is not None and extra.options:
        if strategy is None:
            raise bad_request("reasoner.options needs a strategy (in the model name or reasoner.strategy)", "reasoner.options")
        try:
            options = {**options, **validate_options(strategy, extra.options)}
        except VariantError as exc:
            raise bad_request(str(exc), f"reasoner.options.{exc.option}" if exc.option else "reasoner.options") from None
    return Route(model=model, strategy=strategy, options=options)


def _split(name: str, served: set[str]) -> tuple[str, str, str]:
    """`VARIANT/MODEL` as (variant, "/", model). The model is the longest served name the text
    ends with, so a variant's options may hold a '/' (a classifier's path, a mixture's URLs) and a
    served name may too (`Qwen/Qwen2.5-0.5B`); with none, the first '/' ends the variant."""
    for model in sorted(served, key=len, reverse=True):
        if name.endswith("/" + model) and len(name) > len(model) + 1:
            return name[: -len(model) - 1], "/", model
    return name.partition("/")


def _variant(text: str, param: str) -> tuple[str, dict[str, Any]]:
    try:
        return parse_variant(text)
    except VariantError as exc:
        raise bad_request(str(exc), param, "unknown_strategy" if exc.option is None else "invalid_option") from None
