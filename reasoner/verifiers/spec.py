"""A verifier is named by a spec string: `arith`, `judge`, `judge:MODEL_SPEC`, `prm:URL`.

Kinds are found through the `reasoner.verifiers` entry-point group (so a package can add its own;
this one's are `arith`, `judge` and `prm`, in this folder), plus any registered in this process
with `register` (tests and benchmarks add simulated verifiers).
Each kind is a factory called with the text after the first colon, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from typing import Annotated

from pydantic import AfterValidator

from reasoner.verdict import Verifier

ENTRY_POINT_GROUP = "reasoner.verifiers"
SPEC_HELP = (
    "verifier specs: 'arith' (re-evaluates every 'expression = value' with the calculator), "
    "'judge' (the generating model asked whether each step is right), 'judge:MODEL_SPEC' (another model as judge), "
    "'prm:URL' (a reward model served by vLLM's pooling API), "
    "'classifier' or 'classifier:PATH' (the trained mistake-finder, shipped or from `reasoner verifier train`)"
)

Factory = Callable[[str | None], Verifier]
_registered: dict[str, Factory] = {}


class VerifierSpecError(ValueError):
    """A verifier spec that names no known kind, or is missing what its kind needs."""


def register(kind: str, factory: Factory) -> None:
    """Add a verifier kind for this process (tests, benchmarks); an installed kind of the same name is shadowed."""
    if not kind or ":" in kind:
        raise ValueError(f"a verifier kind is a plain name, got {kind!r}")
    _registered[kind] = factory


@cache
def _installed() -> dict[str, Factory]:
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}


def kinds() -> list[str]:
    return sorted({*_installed(), *_registered})


def parse_spec(spec: str) -> tuple[str, str | None]:
    """(kind, argument) of a spec, checking the kind is known; the argument may be None."""
    if not isinstance(spec, str) or not spec.strip():
        raise VerifierSpecError(f"empty verifier spec; {SPEC_HELP}")
    kind, sep, argument = spec.strip().partition(":")
    if kind not in _registered and kind not in _installed():
        raise VerifierSpecError(f"unknown verifier {kind!r} in spec {spec!r}; known kinds: {', '.join(kinds())}. {SPEC_HELP}")
    if sep and not argument.strip():
        raise VerifierSpecError(f"verifier spec {spec!r} ends with ':' but names nothing after it")
    return kind, argument.strip() if sep else None


def open_verifier(spec: str | Verifier) -> Verifier:
    """The verifier a spec names (a Verifier passes through)."""
    if isinstance(spec, Verifier):
        return spec
    kind, argument = parse_spec(spec)
    factory = _registered.get(kind) or _installed()[kind]
    verifier = factory(argument)
    verifier.spec = spec.strip()
    return verifier


def check_spec(spec: str) -> str:
    """The spec if it opens, else a clear error naming it."""
    open_verifier(spec)
    return spec


#: A strategy option naming a verifier: validated when the strategy is made (`verifier: VerifierSpec`).
VerifierSpec = Annotated[str, AfterValidator(check_spec)]
