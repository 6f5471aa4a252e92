"""Known secrets, and the one place text is cleaned of them before it is written or printed.

Every secret the process learns (an API key, a URL's password) is registered here when it is read.
Whatever the project writes — results, traces, run settings, reports, `--json`, the terminal, log
lines — passes through `scrub` (text) or `scrub_obj` (JSON-like data), so a server that echoes a key
back in a completion or a model id cannot get it onto disk or a screen.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
# Shorter strings would mask ordinary words and numbers; no real key is this short.
MIN_SECRET_LENGTH = 6

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
# The secrets as of the last `register`, read per streamed token without the lock.
_known: tuple[str, ...] = ()


class SecretError(ValueError):
    """A secret is unusable as given (its message never contains the secret)."""


def register(secret: str | None) -> None:
    """Remember a secret so that `scrub` masks it from now on."""
    global _pattern, _known
    if not secret:
        return
    candidates = {secret, secret.strip()}
    with _lock:
        added = {s for s in candidates if len(s) >= MIN_SECRET_LENGTH} - _secrets
        if not added:
            return
        _secrets.update(added)
        # Longest first, so a key that contains another is masked whole.
        _known = tuple(sorted(_secrets, key=len, reverse=True))
        _pattern = re.compile("|".join(re.escape(s) for s in _known))


def register_url(url: str) -> None:
    """Remember the password (and a user name that looks like a token) a URL carries."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        register(parts.password)


def check_api_key(key: str, where: str) -> str:
    """A key must be one printable line: a trailing CR or LF would otherwise echo it in an error."""
    if key != key.strip() or any(ord(c) < 33 or ord(c) == 127 for c in key):
        raise SecretError(
            f"the API key from {where} contains whitespace or control characters (a stray newline?); "
            "fix the value (the key itself is not shown)"
        )
    register(key)
    return key


_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")


def scrub(text: str) -> str:
    """`text` with every known secret, and any password in a URL, replaced by `***`."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "@" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return text


def scrub_obj(value: Any) -> Any:
    """A copy of JSON-like data (dicts, lists, strings) with `scrub` applied to every string, keys too."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_obj(v) for v in value]
    return value


class StreamScrubber:
    """`scrub` for text that arrives in pieces (a stream's tokens), where a secret is split
    across several: text that may be the start of a secret is held back until the pieces after
    it show whether it is one, then emitted masked or as it was. `flush` at the stream's end.
    (A URL's password is masked only where the URL arrives within one piece.)"""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        """What of the text so far can be shown now, masked."""
        text = self._held + piece
        pattern = _pattern
        if pattern is None:
            self._held = ""
            return scrub(text)
        cut = len(text) - _secret_start(text)
        # Never cut through a whole secret: the part shown would give its beginning away.
        for match in pattern.finditer(text):
            if match.start() < cut < match.end():
                cut = match.start()
        self._held = text[cut:]
        return scrub(text[:cut])

    def flush(self) -> str:
        """The text held back, masked: the stream has ended, so nothing can complete it."""
        text, self._held = self._held, ""
        return scrub(text)


def _secret_start(text: str) -> int:
    """The length of the longest end of `text` that is the beginning (not the whole) of a secret."""
    longest = 0
    for secret in _known:
        for size in range(min(len(secret) - 1, len(text)), longest, -1):
            if text.endswith(secret[:size]):
                longest = size
                break
    return longest
