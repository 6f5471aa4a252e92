"""Model backends: OpenAI-compatible HTTP, embedded llama.cpp, and a scripted one for tests."""

from reasoner.backends.base import Backend, BackendError
from reasoner.backends.spec import open_backend

__all__ = ["Backend", "BackendError", "open_backend"]
