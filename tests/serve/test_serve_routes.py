"""Which strategy a gateway request asks for, from its model name (`VARIANT/MODEL`)."""

from __future__ import annotations

import pytest

from reasoner.serve.errors import APIError
from reasoner.serve.routes import resolve

SERVED = {"fake-model", "Qwen/Qwen2.5-0.5B"}


def test_a_variant_may_hold_slashes_a_url_or_a_path() -> None:
    route = resolve("mixture:models=self;http://host2:8000/v1,samples=2/fake-model", None, SERVED)
    assert (route.strategy, route.model) == ("mixture", "fake-model")
    assert route.options == {"models": ["self", "http://host2:8000/v1"], "samples": 2}


def test_a_served_name_may_hold_a_slash_too() -> None:
    assert resolve("self-consistency:samples=4/Qwen/Qwen2.5-0.5B", None, SERVED).options == {"samples": 4}
    route = resolve("Qwen/Qwen2.5-0.5B", None, SERVED)
    assert (route.strategy, route.model) == (None, "Qwen/Qwen2.5-0.5B")  # a passthrough


def test_a_name_that_ends_with_no_served_model_is_refused_naming_them() -> None:
    with pytest.raises(APIError, match="not served here; models: Qwen/Qwen2.5-0.5B, fake-model"):
        resolve("self-consistency/other-model", None, SERVED)
