"""The gateway's settings, checked once at start-up."""

from __future__ import annotations

import ipaddress
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from reasoner import secrets
from reasoner.serve.schemas import Limits

API_KEY_ENV = "REASONER_SERVE_API_KEY"


class ServeError(Exception):
    """The gateway cannot start as configured (the message says what to change)."""


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("local", description="the backend spec the gateway stands in front of")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: Clients must send `Authorization: Bearer KEY`; required to bind beyond loopback.
    api_key: SecretStr | None = None
    max_runs: int = Field(16, ge=1, description="strategy runs at once; more wait in a queue")
    max_waiting: int = Field(128, ge=0, description="strategy runs waiting for a place; more are refused with 503")
    max_traces: int = Field(256, ge=1, description="traces kept for GET /v1/traces/{id}")
    answer: Literal["reasoning", "final"] = "reasoning"
    limits: Limits = Field(default_factory=Limits)
    #: A sample bank file every strategy's model calls go through (record, replay or refresh).
    bank: str | None = None
    bank_mode: Literal["record", "replay", "refresh"] = "record"

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def checked(self) -> ServeConfig:
        """Refuse a non-loopback address without a key: anyone who can reach it could spend the
        upstream's tokens."""
        if self.api_key is not None:
            try:
                secrets.check_api_key(self.api_key.get_secret_value(), f"--api-key / {API_KEY_ENV}")
            except secrets.SecretError as exc:
                raise ServeError(str(exc)) from None
        elif not is_loopback(self.host):
            raise ServeError(f"refusing to listen on {self.host!r} without an API key: give --api-key "
                             f"(or set {API_KEY_ENV}), or bind 127.0.0.1")  # fmt: skip
        return self


def key_from_env(given: str | None) -> SecretStr | None:
    value = given if given is not None else os.environ.get(API_KEY_ENV) or None
    return SecretStr(value) if value else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere
