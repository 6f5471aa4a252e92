"""The settings a run records in run.json, and the check that a --resume keeps them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import reasoner
from reasoner.backends.base import Backend
from reasoner.bench.questions import BenchError, Questions
from reasoner.strategies.common import templates
from reasoner.strategy import Strategy

if TYPE_CHECKING:
    from reasoner.bench.gsm8k import BenchConfig

# Backend settings that change how a request is carried, never what it returns, and file
# locations that may move between machines (the model's name and the data's sha256 stay compared).
OPERATIONAL = {
    "max_in_flight", "n_threads", "connect_timeout", "read_timeout", "stall_timeout_s", "deadline_s", "max_response_bytes",
    "max_attempts", "backoff_base", "backoff_max", "path",
}


# Settings added after the first release, with the value older runs had without them.
NEWER_DEFAULTS: dict[str, Any] = {"data.id_field": "id", "tolerance": None}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        elif not entry.name.startswith("."):
            yield f"{prefix}{entry.name}", entry


def template_digests() -> dict[str, str]:
    """A short hash of every prompt file the strategies ship (templates and exemplar data)."""
    out = {}
    for name, entry in _walk(files("reasoner.strategies") / "prompts"):
        if name.endswith(".j2"):
            out[name] = templates.digest(name)
        elif name.endswith((".jsonl", ".json", ".txt")):
            out[name] = hashlib.sha256(entry.read_bytes()).hexdigest()[:12]
    return out


def public_spec(spec: str) -> str:
    """The model spec without any user:password@ a URL may carry."""
    if spec.startswith(("http://", "https://")):
        parts = urlsplit(spec)
        if "@" in parts.netloc:
            return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return spec


def run_settings(
    config: BenchConfig, backend: Backend | None, strategies: dict[str, Strategy], questions: Questions
) -> dict[str, Any]:
    """The settings run.json records; with `backend` None, all but the backend's description."""
    spec = config.model or (backend.name if backend is not None else "local")
    description = backend.describe() if backend is not None else {}
    problems, path = questions.problems, questions.path
    settings = {
        "task": "gsm8k",
        "benchmark": questions.benchmark,
        "reasoner_version": reasoner.__version__,
        "model": {
            "spec": public_spec(spec),
            "model_name": config.model_name,
            # describe() holds no key, but a base URL may carry user:password@.
            "backend": {k: public_spec(v) if isinstance(v, str) else v for k, v in description.items()},
        },
        "strategies": {label: s.settings() for label, s in strategies.items()},
        "templates": template_digests(),
        "data": {
            "path": str(path),
            "sha256": sha256_file(path),
            "split": questions.split,
            "question_field": config.question_field,
            "answer_field": config.answer_field,
            "id_field": config.id_field,
            "limit": config.limit,
            "sample": config.sample,
            "seed": config.seed if config.sample is not None else None,
            "questions": len(problems),
            "ids_sha256": hashlib.sha256("\n".join(p.id for p in problems).encode()).hexdigest()[:16],
        },
        "scoring": config.scoring,
        "tolerance": None if config.tolerance is None else str(config.tolerance),
    }
    return json.loads(json.dumps(settings, default=str))  # the form it will have once read back


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def settings_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old → new' for each setting that differs, ignoring transport-only backend knobs."""
    missing = object()

    def show(value: Any) -> str:
        return "(absent)" if value is missing else json.dumps(value)

    a, b = _flatten(old), _flatten(new)
    diffs = []
    for key in sorted(a.keys() | b.keys()):
        if (key.startswith("model.backend.") and key.rsplit(".", 1)[1] in OPERATIONAL) or key == "data.path":
            continue
        if key.startswith("templates.") and key not in a:
            continue  # a prompt file added since the run began cannot have been used by it
        if key == "benchmark" and key not in a:
            continue  # a label runs from before it existed lack; it changes no answer
        if key not in a and NEWER_DEFAULTS.get(key, missing) == b.get(key):
            continue  # a setting added since the run began, at the value the run had without it
        before, after = a.get(key, missing), b.get(key, missing)
        if before != after:
            diffs.append(f"{key}: {show(before)} → {show(after)}")
    return diffs


def check_resume(out: Path, previous: dict[str, Any], settings: dict[str, Any], ignore_backend: bool = False) -> None:
    """Refuse to go on with a run under settings other than its own, naming each that differs."""
    diffs = settings_differences(previous["settings"], settings)
    if ignore_backend:
        diffs = [d for d in diffs if not d.startswith(("model.backend.", "model.backend:"))]
    if diffs:
        raise BenchError(
            f"cannot resume {out}: these settings differ from its run.json:\n  "
            + "\n  ".join(diffs)
            + "\nResume with the run's original settings, or start a new run with another --out."
        )
