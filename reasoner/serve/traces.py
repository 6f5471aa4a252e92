"""The traces of recent strategy runs, for `GET /v1/traces/{id}`: kept in memory, newest last, the
oldest dropped beyond `capacity`. They are scrubbed of secrets when served (as text, by the
response), not when stored: most traces are never read, and a scrub of every stored trace was a
third of the gateway's CPU under load."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Any


class TraceStore:
    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"the trace store needs room for at least one trace, got {capacity}")
        self.capacity = capacity
        self._traces: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def add(self, record: dict[str, Any]) -> str:
        trace_id = f"trace-{uuid.uuid4().hex}"
        # The record's parts are fresh (a solution's trace is built for it), so nothing changes them later.
        self._traces[trace_id] = {"id": trace_id, **record}
        while len(self._traces) > self.capacity:
            self._traces.popitem(last=False)
        return trace_id

    def get(self, trace_id: str) -> dict[str, Any] | None:
        return self._traces.get(trace_id)

    def __len__(self) -> int:
        return len(self._traces)
