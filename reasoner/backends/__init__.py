"""Model backends: OpenAI-compatible HTTP, embedded llama.cpp, vLLM in-process."""

from reasoner.backends.base import Backend, BackendError
from reasoner.backends.spec import open_backend

__all__ = ["Backend", "BackendError", "open_backend"]
