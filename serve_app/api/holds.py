"""What one tenant may hold open in an ingress replica at once: event streams, and requests
that wait for a task (long polls, `Prefer: wait`, the synchronous dialects).

Past its share a tenant's next such request is refused at once with 429 and `Retry-After`, so
one key cannot fill the replica's in-flight requests and starve other tenants (or `/healthz`).
The counts are per ingress replica: the share of a deployment is this times its replicas.
"""

from __future__ import annotations

import collections
import contextlib
from typing import AsyncIterator

from serve_app.core.errors import RateLimitedError

STREAMS, WAITS = "streams", "waits"

_WHAT = {STREAMS: "event streams", WAITS: "waiting requests (long polls, Prefer: wait, "
         "synchronous calls)"}


class Hold:
    """One held request; released once, whoever ends it first."""

    def __init__(self, holds: TenantHolds, tenant: str, kind: str):
        self._holds, self._slot = holds, (tenant, kind)
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._holds._give_back(self._slot)


class TenantHolds:
    def __init__(self, max_streams: int, max_waits: int, retry_after_s: int = 5):
        self._limits = {STREAMS: max_streams, WAITS: max_waits}
        self._retry_after = str(retry_after_s)
        self._held: collections.Counter[tuple[str, str]] = collections.Counter()

    def take(self, tenant: str, kind: str) -> Hold:
        held = self._held[(tenant, kind)]
        if held >= self._limits[kind]:
            raise RateLimitedError(
                f"you have {held} {_WHAT[kind]} open, the most one key may hold at once; "
                "close some or poll without waiting", headers={"Retry-After": self._retry_after})
        self._held[(tenant, kind)] += 1
        return Hold(self, tenant, kind)

    @contextlib.asynccontextmanager
    async def holding(self, tenant: str, kind: str) -> AsyncIterator[None]:
        hold = self.take(tenant, kind)
        try:
            yield
        finally:
            hold.release()

    async def streamed(self, hold: Hold, events: AsyncIterator) -> AsyncIterator:
        """The events of a held stream; the hold ends with the stream, however it ends."""
        try:
            async for event in events:
                yield event
        finally:
            hold.release()

    def held(self, tenant: str, kind: str) -> int:
        return self._held[(tenant, kind)]

    def _give_back(self, slot: tuple[str, str]) -> None:
        self._held[slot] -= 1
        if self._held[slot] <= 0:
            del self._held[slot]
