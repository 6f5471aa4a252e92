"""One string names a model: the spec. See the README's table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from reasoner.backends.base import Backend, BackendError

SPEC_HELP = (
    "model specs: 'local' (embedded SmolLM2), 'local:gemma' (embedded Gemma 3 270M), 'llamacpp:PATH.gguf', 'http://HOST:PORT/v1' "
    "(any OpenAI-compatible server; several replicas of one model: comma-separated URLs), "
    "'openai:MODEL' (OPENAI_API_KEY, OPENAI_BASE_URL), 'vllm:MODEL_OR_PATH' (vLLM in this process)"
)


#: Options only an HTTP backend uses; other specs accept and ignore them, so one set of
#: command-line flags serves every spec.
NETWORK_OPTIONS = ("deadline_s", "stall_timeout_s", "max_response_bytes", "reasoning_controls")
#: `think_tags`: how a model that thinks inline in `<think>…</think>` is split (thinking.ThinkTags):
#: "inline" (it writes both tags), "opened" (its chat template opens the block in the prompt).
THINK_TAGS = ("inline", "opened")


async def open_backend(
    spec: str = "local", *, model_name: str | None = None, engine_args: Mapping[str, Any] | None = None,
    think_tags: str | None = None, **options: Any,
) -> Backend:
    """The backend a spec names, connected and ready to use. `options` go to the backend's
    constructor (those set to None are left at the backend's default): `max_in_flight` for every
    spec; `deadline_s`, `stall_timeout_s`, `max_response_bytes`, `reasoning_controls` for HTTP
    specs (ignored by the others); `engine_args` to vLLM's engine for a `vllm:` spec. `think_tags`
    (one of THINK_TAGS) wraps the backend so inline `<think>…</think>` becomes each choice's reasoning."""
    if think_tags is not None and think_tags not in THINK_TAGS:
        raise BackendError(f"think_tags must be one of {', '.join(THINK_TAGS)}, got {think_tags!r}")
    backend = await _open(spec, model_name=model_name, engine_args=engine_args, **options)
    if think_tags is None:
        return backend
    from reasoner.backends.thinking import ThinkTags

    return ThinkTags(backend, thinking=think_tags == "opened")


async def _open(spec: str, *, model_name: str | None, engine_args: Mapping[str, Any] | None, **options: Any) -> Backend:
    spec = spec.strip()
    options = {name: value for name, value in options.items() if value is not None}
    if spec.startswith(("http://", "https://")):
        from reasoner.backends.http import OpenAIBackend

        return await OpenAIBackend(spec.rstrip("/"), model_name, **options).connect()
    if spec.startswith("openai:"):
        from reasoner.backends.http import DEFAULT_BASE_URL, OpenAIBackend

        if not (options.get("api_key") or os.environ.get("OPENAI_API_KEY")):
            raise BackendError(
                f"{spec!r} needs an API key: set the OPENAI_API_KEY environment variable "
                "(a server that needs no key is named by its URL instead, e.g. http://localhost:8000/v1)"
            )
        base_url = os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        return await OpenAIBackend(base_url.rstrip("/"), spec.removeprefix("openai:"), **options).connect()
    for name in NETWORK_OPTIONS:
        options.pop(name, None)
    if spec in ("", "local"):
        from reasoner.backends.local import LlamaCppBackend

        return LlamaCppBackend(**options)
    if spec.startswith("local:"):
        from reasoner.backends.local import EMBEDDED, LlamaCppBackend

        name = spec.removeprefix("local:")
        if name not in EMBEDDED:
            raise BackendError(f"unknown embedded model {name!r} in {spec!r}; the embedded models are {', '.join(EMBEDDED)}")
        return LlamaCppBackend(EMBEDDED[name](), **options)
    if spec.startswith("llamacpp:"):
        from reasoner.backends.local import LlamaCppBackend

        return LlamaCppBackend(spec.removeprefix("llamacpp:"), **options)
    if spec.startswith("vllm:"):
        from reasoner.backends.vllm_engine import VLLMBackend

        model = spec.removeprefix("vllm:")
        if not model:
            raise BackendError("'vllm:' needs a model: a Hugging Face id or a local folder, e.g. vllm:Qwen/Qwen2.5-0.5B-Instruct")
        return VLLMBackend(model, engine_args=engine_args, **options)
    raise BackendError(f"unknown model spec {spec!r}; {SPEC_HELP}")
