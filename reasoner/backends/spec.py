"""One string names a model: the spec. See the README's table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from reasoner.backends.base import Backend, BackendError
from reasoner.types import GenerationRequest

SPEC_HELP = (
    "model specs: 'local' (embedded SmolLM2), 'local:gemma' (embedded Gemma 3 270M), 'llamacpp:PATH.gguf', 'http://HOST:PORT/v1' "
    "(any OpenAI-compatible server; several replicas of one model: comma-separated URLs), "
    "'openai:MODEL' (OPENAI_API_KEY, OPENAI_BASE_URL), 'vllm:MODEL_OR_PATH' (vLLM in this process)"
)


async def open_backend(
    spec: str = "local", *, model_name: str | None = None, engine_args: Mapping[str, Any] | None = None, **options: Any
) -> Backend:
    """The backend a spec names, ready to use. `options` go to the backend's constructor;
    `engine_args` to vLLM's engine for a `vllm:` spec (other specs have no engine to configure)."""
    spec = spec.strip()
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
    if spec.startswith(("http://", "https://")):
        from reasoner.backends.http import OpenAIBackend

        backend = OpenAIBackend(spec.rstrip("/"), model_name, **options)
        if model_name is None:
            cards = await backend.model_cards()
            backend.model = _only_model([card["id"] for card in cards], spec)
            if all(card.get("owned_by") == "vllm" for card in cards):
                # vLLM continues a final assistant message itself; other servers get it folded in.
                backend.continue_final = options.get("continue_final", True)
                backend.supports_tools = await _accepts_tools(backend)
        return backend
    if spec.startswith("openai:"):
        from reasoner.backends.http import OpenAIBackend

        base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        return OpenAIBackend(base_url.rstrip("/"), spec.removeprefix("openai:"), **options)
    if spec.startswith("vllm:"):
        from reasoner.backends.vllm_engine import VLLMBackend

        model = spec.removeprefix("vllm:")
        if not model:
            raise BackendError("'vllm:' needs a model: a Hugging Face id or a local folder, e.g. vllm:Qwen/Qwen2.5-0.5B-Instruct")
        return VLLMBackend(model, engine_args=engine_args, **options)
    raise BackendError(f"unknown model spec {spec!r}; {SPEC_HELP}")


async def _accepts_tools(backend: Any) -> bool:
    """Whether the server takes native tool calls: vLLM does only when started with
    `--enable-auto-tool-choice --tool-call-parser ...`, and rejects requests with tools otherwise."""
    probe = GenerationRequest(prompt="hi", max_tokens=1, tools=(_PROBE_TOOL,))
    try:
        await backend.generate(probe)
    except BackendError as exc:
        if "tool" in str(exc):
            return False
        raise
    return True


_PROBE_TOOL = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}


def _only_model(models: list[str], spec: str) -> str:
    if len(models) == 1:
        return models[0]
    if not models:
        raise BackendError(f"{spec} lists no models; name one with --model-name")
    raise BackendError(f"{spec} serves several models ({', '.join(models)}); choose one with --model-name")
