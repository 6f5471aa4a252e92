"""The layers import only downwards: reasoner ← reasoner.tools ← reasoner.verifiers ← reasoner.strategies ←
reasoner.serve ← reasoner.bench ← reasoner.cli."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Each layer: its installed name and the folder it is installed from, lowest first.
LAYERS = {
    "reasoner": REPO / "reasoner",
    "reasoner.tools": REPO / "tools",
    # Verifiers check with tools (the calculator) and with models; strategies use them.
    "reasoner.verifiers": REPO / "reasoner" / "verifiers",
    "reasoner.strategies": REPO / "strategies",
    # The gateway runs strategies; the benchmarks may start it, the CLI has a sub-command for it.
    "reasoner.serve": REPO / "reasoner" / "serve",
    "reasoner.bench": REPO / "benchmarks",
    "reasoner.cli": REPO / "reasoner" / "cli",
}


def layer_of(module: str) -> str | None:
    for name in reversed(LAYERS):
        if module == name or module.startswith(name + "."):
            return name
    return None


def imported_layers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            # `from reasoner import strategies` names a layer too
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {layer for m in modules if (layer := layer_of(m))}


def files_of(layer: str) -> list[Path]:
    inner = [LAYERS[other] for other in LAYERS if other != layer and LAYERS[other].is_relative_to(LAYERS[layer])]
    return [p for p in LAYERS[layer].rglob("*.py") if not any(p.is_relative_to(d) for d in inner)]


@pytest.mark.parametrize("layer", list(LAYERS))
def test_no_layer_imports_a_higher_one(layer: str) -> None:
    names = list(LAYERS)
    higher = set(names[names.index(layer) + 1 :])
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_layers(path) & higher)
        for path in files_of(layer)
        if imported_layers(path) & higher
    }
    assert offenders == {}


def test_the_layering_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from reasoner.strategies.react import ReAct\nfrom reasoner import cli\n")
    assert imported_layers(bad) - {"reasoner"} == {"reasoner.strategies", "reasoner.cli"}


def test_an_api_only_user_never_imports_torch() -> None:
    # Heavy engines are imported lazily, only by the backends that need them.
    code = (
        "import sys, reasoner, reasoner.backends.http, reasoner.backends.spec, reasoner.backends.vllm_engine, reasoner.cli.main, "
        "reasoner.strategies.few_shot_cot; "
        "reasoner.available(); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'vllm', 'llama_cpp') if m in sys.modules); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
