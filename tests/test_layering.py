"""The layers import only downwards: reasoner ← tools ← strategies ← benchmarks ← cli."""

from __future__ import annotations

import ast
import subprocess
import sys
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


def test_an_api_only_user_never_imports_torch() -> None:
    # Heavy engines are imported lazily, only by the backends that need them.
    code = (
        "import sys, reasoner, reasoner.backends.http, reasoner.backends.spec, reasoner.backends.vllm_engine, cli.main, "
        "strategies.few_shot_cot; "
        "reasoner.available(); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'vllm', 'llama_cpp') if m in sys.modules); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
