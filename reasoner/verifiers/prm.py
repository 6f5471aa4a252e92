"""A reward model served over HTTP by vLLM's pooling API: `prm:URL`.

Two ways a served model scores steps, chosen by whether a step tag is given:
* a process reward model (Qwen2.5-Math-PRM and kin, `--runner pooling`): one text with the step
  tag after every step goes to `POST /pooling`; the model returns a (no, yes) pair at each tag,
  and the step's score is the "yes" probability;
* any classifier or outcome reward model (`--convert classify`): each prefix of the solution
  (question plus steps 1..i) goes to `POST /classify` in one request, and step i's score is the
  last class probability of prefix i.
The spec takes options after semicolons: `prm:http://127.0.0.1:8000;model=NAME;step_tag=<extra_0>`.
The model defaults to the one the server lists. Each scoring is a tool node (traced, counted).

What it catches is what the reward model learned; a classifier's head that was never trained
(the test's SmolLM2) scores everything alike, which exercises the plumbing and nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from reasoner.run import Run
from reasoner.secrets import register_url, scrub
from reasoner.types import Usage
from reasoner.verdict import Verdict, Verifier, lines


class PRMError(RuntimeError):
    """The reward-model server refused a request or answered something that is not scores."""


class PRMVerifier(Verifier):
    def __init__(
        self, url: str, *, model: str | None = None, step_tag: str | None = None, per_step: bool = True, timeout_s: float = 120.0
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a prm verifier needs an http(s) URL, got {url!r} (spec 'prm:http://HOST:PORT')")
        register_url(url)
        # vLLM serves the pooling routes at the root, the OpenAI ones under /v1.
        self.base = url.rstrip("/").removesuffix("/v1")
        self.model = model
        self.step_tag = step_tag
        self.per_step = per_step
        self.timeout_s = timeout_s
        self.spec = f"prm:{url}"

    def texts(self, question: str, steps: Sequence[str]) -> list[str]:
        """What is sent: one tagged text for a PRM, else one prefix per scored step."""
        if self.step_tag is not None:
            return [f"{question}\n\n" + "".join(f"{s}{self.step_tag}" for s in steps)]
        ends = range(1, len(steps) + 1) if self.per_step else [len(steps)]
        return [f"{question}\n\n" + "\n".join(steps[:end]) for end in ends]

    async def verify(self, run: Run, question: str, steps: Sequence[str]) -> Verdict:
        found = lines(steps)
        scores: list[float] = []
        usage = None
        if found:
            scores, prompt_tokens = await self.score(self.texts(question, found))
            usage = Usage(calls=1, prompt_tokens=prompt_tokens)
        if self.step_tag is not None and self.per_step is False:
            scores = scores[-1:]
        return Verdict(verifier=self.spec, steps=found, scores=scores, per_step=self.per_step, usage=usage)

    async def score(self, texts: list[str]) -> tuple[list[float], int]:
        """Scores for the texts, and the prompt tokens the server counted."""
        async with httpx.AsyncClient(base_url=self.base, timeout=self.timeout_s) as client:
            model = self.model or await self._served_model(client)
            self.model = model
            if self.step_tag is not None:
                body = await self._post(client, "/pooling", {"model": model, "input": texts[0]})
                rows = body["data"][0]["data"]
                scores = [_yes(row) for row in rows] if isinstance(rows[0], list) else [_yes(rows)]
            else:
                body = await self._post(client, "/classify", {"model": model, "input": texts})
                scores = [_yes(item["probs"]) for item in body["data"]]
        return scores, int((body.get("usage") or {}).get("prompt_tokens") or 0)

    async def _served_model(self, client: httpx.AsyncClient) -> str:
        cards = (await self._get(client, "/v1/models"))["data"]
        if len(cards) != 1:
            raise PRMError(f"{scrub(self.base)} serves {len(cards)} models; name one: prm:URL;model=NAME")
        return str(cards[0]["id"])

    async def _get(self, client: httpx.AsyncClient, path: str) -> dict[str, Any]:
        return self._read(await self._send(client.get(path)), path)

    async def _post(self, client: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._read(await self._send(client.post(path, json=payload)), path)

    async def _send(self, pending: Any) -> httpx.Response:
        try:
            return await pending
        except httpx.HTTPError as exc:
            raise PRMError(f"reward model at {scrub(self.base)} unreachable: {type(exc).__name__}: {scrub(str(exc))}") from None

    def _read(self, response: httpx.Response, path: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise PRMError(f"reward model at {scrub(self.base)}{path} answered {response.status_code}: {scrub(response.text[:300])}")
        try:
            body = response.json()
            if not isinstance(body, dict) or not body.get("data"):
                raise ValueError("no data")
        except ValueError:
            raise PRMError(f"reward model at {scrub(self.base)}{path} answered without scores: {scrub(response.text[:300])}") from None
        return body


def _yes(row: Any) -> float:
    """The positive class's probability: the last of a (no, yes) pair, or a lone score."""
    values = row if isinstance(row, list) else [row]
    if not values or not all(isinstance(v, (int, float)) for v in values):
        raise PRMError(f"expected a list of probabilities from the reward model, got {str(row)[:100]!r}")
    return float(values[-1])


def prm(argument: str | None) -> PRMVerifier:
    """`prm:URL[;model=NAME][;step_tag=TAG]`."""
    if argument is None:
        raise ValueError("the prm verifier needs the server's URL: prm:http://HOST:PORT")
    url, *options = argument.split(";")
    settings: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key.strip() not in ("model", "step_tag"):
            raise ValueError(f"unknown prm option {option!r} in 'prm:{argument}'; options are model=NAME and step_tag=TAG")
        settings[key.strip()] = value
    return PRMVerifier(url.strip(), **settings)  # type: ignore[arg-type]
