"""`reasoner serve`: an OpenAI-compatible gateway that puts the strategies behind any backend.

A client picks a strategy by the model name (`self-consistency:samples=8/MODEL`) or the request's
`reasoner` field; a plain model name passes straight through. Needs the `serve` extra; the names
below are imported on first use, so `reasoner --help` works without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BackgroundGateway": "reasoner.serve.server",
    "ServeConfig": "reasoner.serve.config",
    "ServeError": "reasoner.serve.config",
    "create_app": "reasoner.serve.app",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reasoner.serve' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
