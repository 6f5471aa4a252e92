"""reasoner: make a language model reason better by orchestrating it.

Strategies from the literature run as graphs of model calls on any backend:

    import reasoner
    solution = reasoner.solve("What is 17 * 3 - 4?", strategy="zero-shot-cot", model="local")
    print(solution.answer, solution.usage)
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names, loaded on first use (PEP 562): `import reasoner.cli` must not pay for pydantic,
# httpx and networkx before the command can install its Ctrl-C handler.
_EXPORTS = {
    "SolveError": "reasoner.api", "asolve": "reasoner.api", "solve": "reasoner.api",
    "Backend": "reasoner.backends", "BackendError": "reasoner.backends", "open_backend": "reasoner.backends",
    "Engine": "reasoner.engine",
    "Ctx": "reasoner.graph", "Graph": "reasoner.graph", "Run": "reasoner.run",
    "Strategy": "reasoner.strategy", "available": "reasoner.strategy", "get_strategy": "reasoner.strategy",
    "Answer": "reasoner.types", "Choice": "reasoner.types", "Completion": "reasoner.types",
    "GenerationRequest": "reasoner.types", "Message": "reasoner.types", "Solution": "reasoner.types",
    "Usage": "reasoner.types",
}

__all__ = sorted(_EXPORTS)


class _SourceTree:
    """From a clone that is not installed, find the layers that live in the repository's top-level
    folders (`strategies/` as `reasoner.strategies`, `tools/`, `benchmarks/`) where the wheel puts
    them. Last on `sys.meta_path`, so an installed or editable package is always found first."""

    def __init__(self, root: str) -> None:
        self.folders = {f"reasoner.{name}": os.path.join(root, folder) for name, folder in _FOLDERS.items()}

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> Any:
        folder = self.folders.get(fullname)
        if folder is None or not os.path.isfile(os.path.join(folder, "__init__.py")):
            return None
        init = os.path.join(folder, "__init__.py")
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[folder])


_FOLDERS = {"tools": "tools", "strategies": "strategies", "bench": "benchmarks"}
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_ROOT, "pyproject.toml")) and os.path.isdir(os.path.join(_ROOT, "strategies")):
    sys.meta_path.append(_SourceTree(_ROOT))


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reasoner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from reasoner.api import SolveError, asolve, solve
    from reasoner.backends import Backend, BackendError, open_backend
    from reasoner.engine import Engine
    from reasoner.graph import Ctx, Graph
    from reasoner.run import Run
    from reasoner.strategy import Strategy, available, get_strategy
    from reasoner.types import Answer, Choice, Completion, GenerationRequest, Message, Solution, Usage
