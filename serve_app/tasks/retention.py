"""Retention: finished tasks older than the period go, with their images and stray objects.

Where the store has a lifecycle rule the objects go by themselves; this sweeper still drops the
task records (their reads then answer 404 `expired`) and anything the rule missed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from serve_app.tasks.ledger import Ledger

logger = logging.getLogger("tessera.tasks")


class Retention:
    def __init__(self, ledger: Ledger, store, days: float):
        self.ledger, self.store, self.days = ledger, store, days

    async def sweep(self, now: float | None = None) -> dict:
        cutoff = (now or time.time()) - self.days * 86400
        old = [t for t in self.ledger.tasks.values()
               if t.done and (t.completed_at or 0) < cutoff]
        keys = [im.key for t in old if t.result for im in t.result.images]
        if keys:
            await self.store.delete_async(keys)
        for t in old:
            del self.ledger.tasks[t.id]
            self.ledger.expired[t.id] = t.tenant
        strays = await asyncio.to_thread(self.store.delete_older_than, cutoff)
        return {"tasks": len(old), "objects": len(keys) + strays}

    async def forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                removed = await self.sweep()
                if removed["tasks"] or removed["objects"]:
                    logger.info("retention removed %s", removed)
            except Exception:  # a store outage must not end the sweeper for good
                logger.exception("retention sweep failed; retrying next interval")
