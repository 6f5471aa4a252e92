"""Prompts are jinja2 templates shipped as package data; each layer loads its own."""

from __future__ import annotations

import hashlib
from functools import cached_property

from jinja2 import Environment, PackageLoader, StrictUndefined


class Templates:
    """The templates in `package/folder`. Missing variables raise instead of rendering as ''."""

    def __init__(self, package: str, folder: str = "prompts") -> None:
        self.package = package
        self.folder = folder

    @cached_property
    def env(self) -> Environment:
        return Environment(
            loader=PackageLoader(self.package, self.folder),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=False,
        )

    def render(self, name: str, **variables: object) -> str:
        return self.env.get_template(name).render(**variables)

    def digest(self, name: str) -> str:
        """A short hash of a template's source, so a run records exactly which prompt it used."""
        source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        return hashlib.sha256(source.encode()).hexdigest()[:12]
