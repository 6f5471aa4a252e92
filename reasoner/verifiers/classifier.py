"""A small trained mistake-finder as a verifier: `classifier` or `classifier:PATH`.

Tyen et al. 2023 ("LLMs cannot find reasoning errors, but can correct them") locate the first
mistake with a lightweight classifier trained on a little data, used as a reward model. This is
one: a logistic regression over the step features of `features.py` (does the arithmetic hold,
where the operands come from, which operation beside which words, ...), trained by
`reasoner verifier train` (`training.py`) and saved as one JSON file. A step's score is
P(right); the model's decision threshold is folded in, so a step is wrong (below 0.5) exactly
where the model flags it. Pure Python: it loads in milliseconds and scores a trace in well
under one, in a tool node (traced, free, never a model call).

`classifier` alone opens the model shipped with the package (`models/mistake_finder.json`,
trained from the shipped GSM8K train split by the command in the README).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from reasoner.run import Run
from reasoner.verdict import Verdict, Verifier, lines
from reasoner.verifiers.features import trace_features

FORMAT = "reasoner-mistake-finder"
SHIPPED = "models/mistake_finder.json"


class ModelFileError(ValueError):
    """A mistake-finder file that is missing, unreadable or not one."""


class MistakeFinder(BaseModel):
    """The saved model: weights by feature name, and the logit above which a step is flagged."""

    format: str = FORMAT
    version: int = 1
    weights: dict[str, float]
    #: A step is the mistake where its logit exceeds this (chosen on calibration traces).
    threshold: float = 0.0
    #: How it was trained and how it scored on held-out traces (the training report).
    trained: dict[str, Any] = Field(default_factory=dict)

    def logits(self, question: str, steps: Sequence[str]) -> list[float]:
        w = self.weights
        return [sum(w.get(name, 0.0) * value for name, value in f.items()) for f in trace_features(question, steps)]

    def scores(self, question: str, steps: Sequence[str]) -> list[float]:
        """P(right) of each step, shifted so that 0.5 is the decision threshold."""
        return [_sigmoid(self.threshold - z) for z in self.logits(question, steps)]

    def first_mistake(self, question: str, steps: Sequence[str]) -> int | None:
        return next((i for i, z in enumerate(self.logits(question, steps)) if z > self.threshold), None)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=None) + "\n")
        return path


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def load_model(path: str | Path | None = None) -> MistakeFinder:
    """The model in `path`, or the shipped one; a bad file is refused naming it and what is wrong.
    Each is read once per process: strategies open their verifier for every question."""
    if path is None:
        return _load_shipped()
    return _load_file(str(Path(path).expanduser().resolve()))


@lru_cache(maxsize=1)
def _load_shipped() -> MistakeFinder:
    resource = files("reasoner.verifiers") / SHIPPED
    if not resource.is_file():
        raise ModelFileError(
            f"no mistake-finder is shipped ({SHIPPED} is missing); train one with "
            "`reasoner verifier train --out FILE` and use classifier:FILE"
        )
    return _parse(resource.read_text(), str(resource))


@lru_cache(maxsize=8)
def _load_file(path: str) -> MistakeFinder:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the mistake-finder ({exc.strerror}); train one with `reasoner verifier train --out {path}`") from None
    return _parse(text, path)


def _parse(text: str, where: str) -> MistakeFinder:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(f"{where}: not JSON ({exc}); a mistake-finder file is written by `reasoner verifier train`") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not a mistake-finder file (its 'format' is not {FORMAT!r})")
    try:
        return MistakeFinder.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ModelFileError(f"{where}: field {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


class ClassifierVerifier(Verifier):
    def __init__(self, model: MistakeFinder, spec: str = "classifier") -> None:
        self.model = model
        self.spec = spec

    async def verify(self, run: Run, question: str, steps: Sequence[str]) -> Verdict:
        found = lines(steps)
        return Verdict(verifier=self.spec, steps=found, scores=self.model.scores(question, found))


def classifier(argument: str | None) -> ClassifierVerifier:
    """`classifier` (the shipped model) or `classifier:PATH` (a file `reasoner verifier train` wrote)."""
    model = load_model(argument)
    return ClassifierVerifier(model, "classifier" if argument is None else f"classifier:{argument}")
