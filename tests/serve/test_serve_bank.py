"""The gateway with a sample bank (`reasoner serve --bank PATH`): a strategy asked twice with the
same seed is answered from the bank the second time, and replay-only needs no upstream call."""

from __future__ import annotations

from pathlib import Path

from serve_support import MODEL, QUESTION, openai, responder

from reasoner.serve import BackgroundGateway, ServeConfig
from reasoner.serve.server import backend_factory
from reasoner.testing.fake_openai import FakeOpenAIServer


def ask(config: ServeConfig) -> str | None:
    with BackgroundGateway(config, backend_factory(config, {"model_name": MODEL})) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model=f"self-consistency:samples=4/{MODEL}", messages=QUESTION, seed=7)  # type: ignore[arg-type]
        return reply.model_extra["reasoner"]["answer"]  # type: ignore[index]


def test_a_banked_gateway_replays_what_it_recorded(tmp_path: Path) -> None:
    bank = tmp_path / "gateway.bank"
    with FakeOpenAIServer(responder=responder) as upstream:
        config = ServeConfig(model=upstream.base_url, port=0, bank=str(bank))
        first = ask(config)
        recorded = len(upstream.completion_requests())
        assert recorded >= 1 and bank.is_file()
        again = ask(config)
        assert again == first and len(upstream.completion_requests()) == recorded, "the replay asked the upstream again"
        replay_only = ask(config.model_copy(update={"bank_mode": "replay"}))
        assert replay_only == first and len(upstream.completion_requests()) == recorded
