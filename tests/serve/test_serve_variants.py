"""`reasoner.variants`: a strategy with options in one string, checked by the strategy's own model."""

from __future__ import annotations

import pytest

from reasoner.variants import VariantError, parse_variant, validate_options


def test_a_name_alone_and_a_name_with_typed_options() -> None:
    assert parse_variant("few-shot-cot") == ("few-shot-cot", {})
    name, options = parse_variant(" self-consistency:samples=8, stopping=beta ,logprobs=true")
    assert name == "self-consistency" and options == {"samples": 8, "stopping": "beta", "logprobs": True}
    assert type(options["samples"]) is int


@pytest.mark.parametrize(
    ("text", "option", "words"),
    [
        ("self-consistency:samples=lots", "samples", "valid integer"),
        ("self-consistency:samples=0", "samples", "greater than or equal to 1"),
        ("self-consistency:stopping=sometimes", "stopping", "stopping"),
        ("self-consistency:colour=red", "colour", "has no option 'colour'"),
        ("self-consistency:samples", "samples", "not KEY=VALUE"),
        ("self-consistency:samples=2,samples=3", "samples", "given twice"),
        ("self-consistency:=3", None, "not KEY=VALUE"),
        ("no-such-strategy:samples=3", None, "unknown strategy 'no-such-strategy'"),
    ],
)
def test_bad_variants_name_what_is_wrong(text: str, option: str | None, words: str) -> None:
    with pytest.raises(VariantError, match=words) as caught:
        parse_variant(text)
    assert caught.value.option == option


def test_options_from_json_are_checked_the_same_way() -> None:
    assert validate_options("self-consistency", {"samples": "4"}) == {"samples": 4}
    with pytest.raises(VariantError) as caught:
        validate_options("self-consistency", {"threshold": 0.2})
    assert caught.value.option == "threshold"
