"""The layers import only downwards: reasoner ← tools ← strategies ← benchmarks ← cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = ["reasoner", "tools", "strategies", "benchmarks", "cli"]


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_higher_one(layer: str) -> None:
    higher = set(LAYERS[LAYERS.index(layer) + 1 :])
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) & higher)
        for path in (REPO / layer).rglob("*.py")
        if imported_packages(path) & higher
    }
    assert offenders == {}


def test_core_needs_no_torch() -> None:
    for path in (REPO / "reasoner").rglob("*.py"):
        assert not imported_packages(path) & {"torch", "transformers", "vllm"}, path
