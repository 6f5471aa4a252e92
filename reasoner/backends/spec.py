"""One string names a model: the spec. See the README's table."""

from __future__ import annotations

import os
from typing import Any

from reasoner.backends.base import Backend, BackendError

SPEC_HELP = (
    "model specs: 'local' (embedded SmolLM2), 'llamacpp:PATH.gguf', 'http://HOST:PORT/v1' "
    "(any OpenAI-compatible server), 'openai:MODEL' (OPENAI_API_KEY, OPENAI_BASE_URL), 'vllm:MODEL'"
)


async def open_backend(spec: str = "local", *, model_name: str | None = None, **options: Any) -> Backend:
    """The backend a spec names, ready to use. `options` go to the backend's constructor."""
    spec = spec.strip()
    if spec in ("", "local"):
        from reasoner.backends.local import LlamaCppBackend

        return LlamaCppBackend(**options)
    if spec.startswith("llamacpp:"):
        from reasoner.backends.local import LlamaCppBackend

        return LlamaCppBackend(spec.removeprefix("llamacpp:"), **options)
    if spec.startswith(("http://", "https://")):
        from reasoner.backends.http import OpenAIBackend

        backend = OpenAIBackend(spec.rstrip("/"), model_name, **options)
        if model_name is None:
            backend.model = await _only_model(backend, spec)
        return backend
    if spec.startswith("openai:"):
        from reasoner.backends.http import OpenAIBackend

        base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        return OpenAIBackend(base_url.rstrip("/"), spec.removeprefix("openai:"), **options)
    if spec.startswith("vllm:"):
        raise BackendError(
            "the in-process vLLM backend is not installed in this version of reasoner; "
            "serve the model with vLLM's OpenAI-compatible server and use its URL as the spec "
            "(e.g. http://127.0.0.1:8000/v1)"
        )
    raise BackendError(f"unknown model spec {spec!r}; {SPEC_HELP}")


async def _only_model(backend: Any, spec: str) -> str:
    models = await backend.list_models()
    if len(models) == 1:
        return models[0]
    if not models:
        raise BackendError(f"{spec} lists no models; name one with --model-name")
    raise BackendError(f"{spec} serves several models ({', '.join(models)}); choose one with --model-name")
