"""The traces of recent strategy runs, for `GET /v1/traces/{id}`: kept in memory, newest last, the
oldest dropped beyond `capacity`; scrubbed of secrets before they are stored."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from typing import Any

from reasoner import secrets


class TraceStore:
    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"the trace store needs room for at least one trace, got {capacity}")
        self.capacity = capacity
        self._traces: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def add(self, record: dict[str, Any]) -> str:
        trace_id = f"trace-{uuid.uuid4().hex}"
        # A JSON round trip, so what is served later is what was true now (no live objects).
        self._traces[trace_id] = secrets.scrub_obj(json.loads(json.dumps({"id": trace_id, **record}, default=str)))
        while len(self._traces) > self.capacity:
            self._traces.popitem(last=False)
        return trace_id

    def get(self, trace_id: str) -> dict[str, Any] | None:
        return self._traces.get(trace_id)

    def __len__(self) -> int:
        return len(self._traces)
