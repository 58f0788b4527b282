"""The task actor's writes: every change to a task is committed before anyone can read it.

One writer commits whatever has queued up meanwhile in one transaction (group commit), so a burst
of submissions and transitions costs a few commits, not one each. A caller awaits its own write:

- a submission (`durable=True`) fails at once with 503 when the database refuses the commit, so
  no task is ever accepted that is not stored; every later write of that task is dropped (its
  dispatch may have begun before the commit failed, and its transitions must not store it);
- a transition is retried with backoff until the database takes it, so a task that finishes
  while the database is away is recorded once it is back. Readers of that task wait for its
  commit (`settled`) and answer 503 if it does not come in time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from serve_app.core.errors import ServiceUnavailableError
from serve_app.core.tasks import Task
from serve_app.db import tasks as task_rows
from serve_app.db.engine import run

logger = logging.getLogger("tessera.db")

RETRY_AFTER = {"Retry-After": "5"}

# Refused submissions remembered, newest kept: a refused task's dispatch is stopped at once, so
# its stray writes come within moments, and a long outage must not grow the set without end.
MAX_REFUSED = 10_000


def unavailable(exc: BaseException) -> ServiceUnavailableError:
    return ServiceUnavailableError(f"the task database is unavailable: {type(exc).__name__}: "
                                   f"{str(exc)[:200]}", headers=RETRY_AFTER)


@dataclass
class _Write:
    task_id: str
    row: dict
    future: asyncio.Future
    durable: bool
    deliveries: list[dict]  # webhook deliveries this change makes, committed with it


class Journal:
    def __init__(self, engine: Engine, max_backoff_s: float = 5.0):
        self.engine = engine
        self.max_backoff_s = max_backoff_s
        self._queue: list[_Write] = []
        self._wake = asyncio.Event()
        self._latest: dict[str, asyncio.Future] = {}  # task id -> its newest write
        # submissions the database refused, never to be written (a dict: oldest first)
        self._refused: dict[str, None] = {}
        self.commits = 0
        self.worker = asyncio.create_task(self._run())

    def save(self, task: Task, durable: bool = False,
             deliveries: list[dict] | None = None) -> asyncio.Future:
        """Queue the task's current state (and the webhook deliveries it makes, in the same
        transaction) for commit; the future resolves once committed."""
        future = asyncio.get_running_loop().create_future()
        if task.id in self._refused:
            future.set_result(None)
            return future
        self._queue.append(_Write(task.id, task_rows.row(task), future, durable,
                                  deliveries or []))
        self._latest[task.id] = future
        self._wake.set()
        return future

    async def settled(self, task_id: str, timeout_s: float) -> None:
        """Wait until the task's last change is committed; 503 if that takes too long. The
        task may change again while a commit is awaited (it ends while its start is being
        written): its newest write is awaited in turn, so a reader never sees a state that is
        not stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (future := self._latest.get(task_id)) is not None and not future.done():
            try:
                await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise ServiceUnavailableError(
                    "the task database is not answering; this task's latest state is not "
                    "stored yet", headers=RETRY_AFTER) from None

    def pending(self, task_id: str) -> bool:
        future = self._latest.get(task_id)
        return future is not None and not future.done()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._queue = self._queue, []
            rows = {w.task_id: w.row for w in batch}  # the newest state of each task wins
            deliveries = [d for w in batch for d in w.deliveries]  # every one counts
            try:
                await asyncio.to_thread(run, task_rows.upsert, self.engine,
                                        list(rows.values()), deliveries)
            except Exception as exc:
                logger.warning("commit of %d task writes failed: %s", len(batch), exc)
                refused = {w.task_id for w in batch if w.durable}
                self._refused.update(dict.fromkeys(refused))
                while len(self._refused) > MAX_REFUSED:
                    self._refused.pop(next(iter(self._refused)))
                for w in batch:
                    if w.durable:  # a submission: the caller answers 503, nothing was accepted
                        w.future.set_exception(unavailable(exc))
                # transitions are kept, before anything newer, and tried again; those of a
                # refused submission are dropped
                retry = [w for w in batch if not w.durable] + self._queue
                for w in retry:
                    if w.task_id in refused:
                        w.future.set_result(None)
                for task_id in refused:
                    self._latest.pop(task_id, None)
                self._queue = [w for w in retry if w.task_id not in refused]
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = 0.2
            self.commits += 1
            for w in batch:
                if not w.future.done():
                    w.future.set_result(None)
                if self._latest.get(w.task_id) is w.future:
                    del self._latest[w.task_id]
