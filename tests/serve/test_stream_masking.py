"""A secret that a server echoes in a streamed answer comes a token at a time, split over many
events: it is masked whole, on the forwarded stream and on the translated one."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from serve_support import MODEL, openai, upstream  # noqa: F401 (upstream: a fixture)

from reasoner import secrets
from reasoner.serve import BackgroundGateway, ServeConfig
from reasoner.serve.masking import EventMasker
from reasoner.testing.fake_openai import FakeOpenAIServer
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import Completion, GenerationRequest, StreamChunk

KEY = "sk-stream-secret-9876543210"
OTHER = "sk-stream-secret-98"  # a registered secret that is the beginning of KEY
TEXT = f"Your key is {KEY}. Again: {KEY}"


@pytest.fixture(autouse=True, scope="module")
def known() -> None:
    secrets.register(KEY)
    secrets.register(OTHER)


def pieces_of(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, min(12, len(text) - 1))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


@pytest.mark.parametrize("text", [TEXT, "no secret here, only words", f"{KEY[:-1]}x is not it", f"{OTHER} alone", KEY])
def test_however_the_text_is_split_the_shown_text_is_the_text_masked_whole(text: str) -> None:
    rng = random.Random(7)
    for _ in range(200):
        scrubber = secrets.StreamScrubber()
        shown = [scrubber.feed(p) for p in pieces_of(text, rng)] + [scrubber.flush()]
        assert "".join(shown) == secrets.scrub(text)


def test_text_that_cannot_start_a_secret_is_shown_at_once() -> None:
    scrubber = secrets.StreamScrubber()
    assert scrubber.feed("The answer ") == "The answer "
    assert scrubber.feed("is 42. s") == "is 42. "  # "s" may begin the key: held
    assert scrubber.feed("o it is.") == "so it is."


def sse(choice: dict[str, object]) -> str:
    return "data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]})


def shown_by(masker: EventMasker, lines: list[str]) -> tuple[str, str, list[str]]:
    out = [o for line in lines for o in masker.line(line)]
    content = arguments = ""
    for line in out:
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                delta = choice.get("delta", {})
                content += delta.get("content") or ""
                for call in delta.get("tool_calls") or []:
                    arguments += call["function"].get("arguments") or ""
    return content, arguments, out


def test_forwarded_events_are_rewritten_and_what_is_held_goes_out_with_the_finish() -> None:
    tokens = [TEXT[i : i + 3] for i in range(0, len(TEXT), 3)]
    args = json.dumps({"key": KEY})
    lines = [sse({"index": 0, "delta": {"content": t}, "finish_reason": None}) for t in tokens]
    lines += [sse({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 4]}}]}, "finish_reason": None})
              for i in range(0, len(args), 4)]  # fmt: skip
    lines += [sse({"index": 0, "delta": {}, "finish_reason": "stop"}), "", "data: [DONE]"]
    content, arguments, out = shown_by(EventMasker(), lines)
    assert content == secrets.scrub(TEXT) == "Your key is ***. Again: ***"
    assert json.loads(arguments) == {"key": "***"}
    assert out[-1] == "data: [DONE]" and KEY[:8] not in "".join(out)


def test_text_held_when_the_upstream_sends_no_finish_comes_before_done() -> None:
    tokens = ["Key: ", KEY[:9]]  # the stream broke off: what was held for being a key's start is no key
    lines = [sse({"index": 0, "delta": {"content": t}, "finish_reason": None}) for t in tokens] + ["data: [DONE]"]
    content, _, out = shown_by(EventMasker(), lines)
    assert content == f"Key: {KEY[:9]}"
    assert json.loads(out[-3][6:])["choices"][0]["delta"] == {"content": KEY[:9]}
    assert out[-1] == "data: [DONE]" and out[-2] == ""  # the extra event is ended before [DONE]


# Words cut into 3-character tokens: the key arrives in nine events.
pytestmark = pytest.mark.server(models=MODEL, responder=lambda body, index: TEXT, token_chars=3)


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
def test_a_forwarded_stream_masks_a_key_split_over_many_tokens(upstream: FakeOpenAIServer, path: str) -> None:
    async def open_it() -> object:
        from reasoner.backends.http import OpenAIBackend

        return await OpenAIBackend(upstream.base_url, max_attempts=1).connect()

    body = {"model": MODEL, "stream": True, "max_tokens": 100,
            **({"messages": [{"role": "user", "content": "hi"}]} if path == "/chat/completions" else {"prompt": "hi"})}  # fmt: skip
    with BackgroundGateway(ServeConfig(model=upstream.base_url, port=0), open_it) as gw:  # type: ignore[arg-type]
        raw = httpx.post(f"{gw.base_url}{path}", json=body, timeout=30).text
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    text = "".join(c.get("text") or (c.get("delta") or {}).get("content") or "" for e in events for c in e["choices"])
    assert len(events) > 10  # still a stream of tokens, not one piece
    assert text == "Your key is ***. Again: ***"
    assert raw.rstrip().endswith("data: [DONE]")


class Tokens(ScriptedBackend):
    """Streams its answer three characters at a time, as a model streams tokens."""

    supports_streaming = True

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        completion: Completion = await self._generate(request)
        text = completion.choices[0].text
        for i in range(0, len(text), 3):
            yield StreamChunk(index=0, text=text[i : i + 3])
        yield StreamChunk(completion=completion)


def test_a_translated_stream_masks_a_key_split_over_many_tokens() -> None:
    async def open_it() -> Tokens:
        return Tokens([], default=TEXT)

    with BackgroundGateway(ServeConfig(model="scripted", port=0), open_it) as gw:
        api = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
        chunks = list(api.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 10
    assert text == "Your key is ***. Again: ***"
