"""Secrets masked in a streamed answer forwarded from an upstream server.

A model's tokens arrive an event each, so a key the upstream echoes comes split over many events
and a scrub of each event alone would let every piece through. `EventMasker` keeps a
`secrets.StreamScrubber` for each text of each choice (content, reasoning, text, a tool call's
arguments) and rewrites the events with what can be shown; what it held back goes out with the
choice's finish, or in an event of its own before `[DONE]` when the upstream sent no finish.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from reasoner import secrets

# The streamed texts of a choice, as paths inside it.
_TEXTS: tuple[tuple[str, ...], ...] = (("delta", "content"), ("delta", "reasoning_content"), ("delta", "reasoning"), ("text",))
# (choice index, path) or (choice index, ("tool_calls", tool index)) for a tool call's arguments.
_Key = tuple[int, tuple[Any, ...]]


class EventMasker:
    """Rewrites an upstream's server-sent event lines so that no known secret gets through whole
    or in pieces; lines that are not JSON events are scrubbed as they are."""

    def __init__(self) -> None:
        self._scrubbers: defaultdict[_Key, secrets.StreamScrubber] = defaultdict(secrets.StreamScrubber)
        self._head: dict[str, Any] = {}

    def line(self, line: str) -> list[str]:
        """The lines to send for one upstream line (the held-back text comes before `[DONE]`)."""
        if not line.startswith("data:"):
            return [secrets.scrub(line)]
        payload = line[5:].strip()
        if payload == "[DONE]":
            return [*self.leftovers(), line]
        try:
            event = json.loads(payload)
        except ValueError:
            return [secrets.scrub(line)]
        if not isinstance(event, dict) or not isinstance(event.get("choices"), list):
            return [secrets.scrub(line)]
        self._head = {k: event[k] for k in ("id", "object", "created", "model") if k in event}
        for choice in event["choices"]:
            if isinstance(choice, dict) and isinstance(choice.get("index"), int):
                self._mask(choice)
        return [_data(event)]

    def leftovers(self) -> list[str]:
        """Events carrying what is still held back (called at the stream's end)."""
        lines = []
        for (index, path), scrubber in list(self._scrubbers.items()):
            text = scrubber.flush()
            if text:
                choice: dict[str, Any] = {"index": index, "finish_reason": None}
                _put(choice, path, text)
                lines += [_data({**self._head, "choices": [choice]}), ""]  # an event ends at a blank line
        self._scrubbers.clear()
        return lines

    def _mask(self, choice: dict[str, Any]) -> None:
        index = choice["index"]
        for path in _TEXTS:
            parent = _get(choice, path[:-1])
            if isinstance(parent, dict) and isinstance(parent.get(path[-1]), str):
                parent[path[-1]] = self._scrubbers[index, path].feed(parent[path[-1]])
        delta = choice.get("delta")
        calls = delta.get("tool_calls") if isinstance(delta, dict) else None
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                key = ("tool_calls", call.get("index", 0))
                function["arguments"] = self._scrubbers[index, key].feed(function["arguments"])
        if choice.get("finish_reason"):
            for (i, path), scrubber in list(self._scrubbers.items()):
                if i == index:
                    held = scrubber.flush()
                    if held:
                        _put(choice, path, held)
                    del self._scrubbers[(i, path)]


def _data(event: dict[str, Any]) -> str:
    return f"data: {secrets.scrub(json.dumps(event, separators=(',', ':'), ensure_ascii=False))}"


def _get(choice: dict[str, Any], path: tuple[Any, ...]) -> Any:
    value: Any = choice
    for step in path:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _put(choice: dict[str, Any], path: tuple[Any, ...], text: str) -> None:
    """Add `text` after what is at `path`, making the dicts on the way; a tool call's arguments
    go to the event's entry for that call, made when it has none."""
    if path[0] == "tool_calls":
        delta = choice.setdefault("delta", {})
        calls = delta.setdefault("tool_calls", [])
        for call in calls:
            if isinstance(call, dict) and call.get("index", 0) == path[1]:
                call.setdefault("function", {})["arguments"] = (call["function"].get("arguments") or "") + text
                return
        calls.append({"index": path[1], "function": {"arguments": text}})
        return
    target = choice
    for step in path[:-1]:
        target = target.setdefault(step, {})
    target[path[-1]] = (target.get(path[-1]) or "") + text
