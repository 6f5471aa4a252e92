"""Several servers of one model behind one transport: least-loaded routing with failover."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reasoner import secrets
from reasoner.backends.errors import BackendConnectionError, BackendError, BackendTimeoutError, ServerError
from reasoner.backends.transports import Call, Reply, Transport

log = logging.getLogger(__name__)

# A failed replica is skipped for 1 s, then 2, 4, ... up to this, while it keeps failing.
MAX_COOL_DOWN_S = 30.0


@dataclass
class Replica:
    """One server of the model: its transport, its requests in flight, and whether it is skipped."""

    url: str
    transport: Transport
    in_flight: int = 0
    failures: int = 0  # in a row
    down_until: float = 0.0
    # Counts failures ever; a reply to a call sent before the latest one says nothing of the replica now.
    epoch: int = 0


class Router(Transport):
    """Sends each call to the replica with the fewest calls in flight.

    A replica that fails (refused or dropped connection, timeout, 5xx) is skipped, and the error
    marked `failover` when another replica is up, so the retry layer resends at once; it gets one
    trial call after a cool-down that doubles while it keeps failing (1 s to 30 s). When every
    replica is down, calls go to the one due back first, paced by the retry layer's backoff.
    """

    def __init__(self, replicas: Sequence[tuple[str, Transport]]) -> None:
        if not replicas:
            raise ValueError("a Router needs at least one replica")
        self.replicas = [Replica(url, transport) for url, transport in replicas]
        self.turn = 0
        #: Replaced in tests to move time on without waiting.
        self.clock: Callable[[], float] = time.monotonic

    def pick(self) -> Replica:
        """The replica with the fewest calls in flight among those not skipped."""
        if len(self.replicas) == 1:
            return self.replicas[0]
        now = self.clock()
        # A replica back from its cool-down takes one trial call before it gets its share.
        up = [r for r in self.replicas if r.down_until <= now and (r.failures == 0 or r.in_flight == 0)]
        if not up:
            return min(self.replicas, key=lambda r: r.down_until)
        # Ties rotate, so light sequential traffic still reaches every replica.
        self.turn = (self.turn + 1) % len(up)
        return min(up[self.turn :] + up[: self.turn], key=lambda r: r.in_flight)

    def failed(self, replica: Replica, cause: str) -> None:
        now = self.clock()
        if replica.down_until > now:
            return  # its other calls in flight failed too: one failure, not many
        replica.failures += 1
        replica.epoch += 1
        cool_down = min(MAX_COOL_DOWN_S, 2.0 ** (replica.failures - 1))
        replica.down_until = now + cool_down
        if len(self.replicas) > 1:
            log.warning(secrets.scrub(f"replica {replica.url} failed ({cause}); skipping it for {cool_down:.0f}s"))

    def succeeded(self, replica: Replica) -> None:
        if replica.failures and len(self.replicas) > 1:
            log.warning(secrets.scrub(f"replica {replica.url} is back"))
        replica.failures = 0
        replica.down_until = 0.0

    def any_up(self) -> bool:
        now = self.clock()
        return any(r.down_until <= now for r in self.replicas)

    async def send(self, call: Call) -> Reply:
        replica = self.pick()
        replica.in_flight += 1
        epoch = replica.epoch
        try:
            reply = await replica.transport.send(call)
        except BackendError as exc:
            replica.in_flight -= 1
            if _replica_fault(exc):
                self.failed(replica, str(exc))
                exc.failover = replica.down_until > self.clock() and self.any_up()
            raise
        except BaseException:
            replica.in_flight -= 1
            raise
        if epoch == replica.epoch:
            self.succeeded(replica)
        if not call.stream:
            replica.in_flight -= 1
            return reply

        async def release() -> None:
            replica.in_flight -= 1

        reply.on_close(release)
        return reply

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.transport.aclose()


def _replica_fault(exc: BackendError) -> bool:
    """Whether the server itself is in trouble (not the request, not a rate limit)."""
    if isinstance(exc, (BackendConnectionError, ServerError)):
        return exc.status is None or exc.status >= 500
    return isinstance(exc, BackendTimeoutError) and exc.status is None
