"""The task actor: one per Tessera instance (`<instance>-tasks` in the Ray namespace `tessera`),
the single writer of task state.

The ingress submits `Task` records and reads them back; the actor stores them (`db`), queues
them per family, dispatches them to the family servers and consumes their event streams
(`dispatch`), fails what passes its deadline, applies retention, and lets finished tasks go from
memory. Family servers never call it.

It is created with its config and the family handles, and Ray restarts it when its process
dies (`max_restarts=-1`): every start migrates the database, reloads the unfinished tasks in
the order they were accepted, and dispatches again. Calls made while it restarts are retried by
Ray (`max_task_retries=-1`) and wait; every call waits until the start is done.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

import ray

from serve_app.core.config import LimitSettings, TesseraConfig
from serve_app.core.errors import (
    IdempotencyKeyReusedError,
    QueueFullError,
    RateLimitedError,
    TesseraError,
)
from serve_app.core.storage import make_store
from serve_app.core.tasks import Task
from serve_app.core.telemetry import setup_logging, setup_tracing
from serve_app.db import idempotency
from serve_app.db import tasks as task_rows
from serve_app.db.engine import database_url, make_engine, migrate
from serve_app.tasks.dispatch import FamilyDispatcher
from serve_app.tasks.journal import Journal
from serve_app.tasks.ledger import Ledger, LedgerHooks
from serve_app.tasks.retention import Retention
from serve_app.tasks.webhooks import COMPLETED, START, WebhookOutbox

logger = logging.getLogger("tessera.tasks")

NAMESPACE = "tessera"


class TaskManager:
    def __init__(self, config: dict | None = None, handles: dict[str, Any] | None = None):
        self.ledger: Ledger | None = None  # made, whole, once the config is known
        self._engine = None
        self._dispatchers: dict[str, FamilyDispatcher] = {}
        self._limits: LimitSettings | None = None
        self._background: list[asyncio.Task] = []
        self._retention: Retention | None = None
        self._store = None
        self._ready = asyncio.Event()
        self._started_at = time.time()
        self._configuring = asyncio.Lock()
        self._key_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.outbox: WebhookOutbox | None = None
        if config is not None:  # a Ray actor (also after a restart): start by itself
            self._boot = asyncio.get_running_loop().create_task(self.configure(config, handles))

    # ------------------------------------------------------------ start

    async def configure(self, config: dict, handles: dict[str, Any]) -> None:
        """The first call starts everything; later ones (each ingress replica's start) only
        give newer family handles."""
        async with self._configuring:
            if self._ready.is_set():
                for name, handle in handles.items():
                    if name in self._dispatchers:
                        self._dispatchers[name].use(handle)
                return
            await self._start(TesseraConfig.model_validate(config), handles)
            self._ready.set()

    async def _start(self, cfg: TesseraConfig, handles: dict[str, Any]) -> None:
        setup_tracing(cfg.tracing, cfg.data_dir, "task-actor")
        setup_logging()
        self._limits = cfg.limits
        self._store = make_store(cfg)
        engine = self._engine = make_engine(database_url(cfg))
        await asyncio.to_thread(migrate, engine)
        live: dict[str, Task] = {}  # the tasks in memory: the ledger's, read by the outbox
        self.outbox = WebhookOutbox(engine, self._store, cfg, live)
        hooks = LedgerHooks(on_start=functools.partial(self.outbox.deliveries, event=START),
                            on_end=functools.partial(self.outbox.deliveries, event=COMPLETED),
                            on_stored=self.outbox.wake, stop_dispatch=self._stop_dispatch)
        families = cfg.enabled_families()
        self.ledger = Ledger(Journal(engine), list(families), hooks, cfg.database.read_wait_s,
                             cfg.limits.keep_finished_s, cfg.storage.retention_days, live)
        restored = await asyncio.to_thread(task_rows.unfinished, engine)
        for task in restored:
            if task.family in families:
                self.ledger.restore(task)
            else:  # its family is no longer deployed: it cannot run here
                self.ledger.fail_unrunnable(task, "model_not_supported",
                                            f"family {task.family} is not deployed any more")
        if restored:
            logger.info("restored %d unfinished tasks", len(restored))
        for name, settings in families.items():
            self._dispatchers[name] = FamilyDispatcher(self.ledger, name, handles[name],
                                                       settings)
        self._background.append(asyncio.create_task(self._watch()))
        if cfg.storage.retention_days:
            self._retention = Retention(self.ledger, self._store, cfg.storage.retention_days)
            self._background.append(asyncio.create_task(
                self._retention.forever(cfg.storage.retention_sweep_interval_s)))

    async def ping(self) -> bool:
        await self._ready.wait()
        return True

    # ------------------------------------------------------------ the API's side

    async def submit(self, task: Task, body_hash: str | None = None,
                     wait_s: float = 0) -> Task:
        """Accept a task (queued), or, for an Idempotency-Key seen with the same body within
        24 h, answer the task it created; the key with another body is a 422. With wait_s,
        the answer comes once that task has ended, or after wait_s seconds."""
        accepted = await self._submit(task, body_hash)
        if not wait_s:
            return accepted
        return await self.wait(accepted.id, accepted.tenant, wait_s)

    async def _submit(self, task: Task, body_hash: str | None) -> Task:
        await self._ready.wait()
        known = self.ledger.live(task.id)
        if known is not None:  # Ray retried this call after a restart: it was accepted
            return self.ledger.snapshot(known)
        if task.created_at <= self._started_at:
            # Made before this process started: Ray may be retrying a call that the previous
            # process accepted, and the task may have ended and left memory since. The stored
            # task is the answer; it is never overwritten.
            stored = await self.ledger.stored(task.id, task.tenant)
            if stored is not None:
                return await self._view(stored)
        if task.idempotency_key is None:
            return await self._accept(task)
        slot = (task.tenant, task.idempotency_key)
        lock = self._key_locks.setdefault(slot, asyncio.Lock())
        try:
            async with lock:  # two submissions with one key: the second sees the first's task
                return await self._submit_once(task, body_hash)
        finally:
            if not lock.locked():
                self._key_locks.pop(slot, None)

    async def _submit_once(self, task: Task, body_hash: str | None) -> Task:
        """Under the key's lock: replay, refuse, or accept and remember the key."""
        engine = self._engine
        seen = await self.ledger.db(idempotency.find, engine, task.tenant,
                                     task.idempotency_key, task.created_at)
        if seen is not None:
            if seen[0] != body_hash:
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {task.idempotency_key!r} was used with another "
                    "request in the last 24 hours; use a new key for a new request",
                    param="Idempotency-Key")
            return await self.get(seen[1], task.tenant)
        accepted = await self._accept(task)
        await self.ledger.db(idempotency.remember, engine, task.tenant,
                             task.idempotency_key, body_hash, task.id, task.created_at)
        return accepted

    async def _accept(self, task: Task) -> Task:
        dispatcher = self._dispatchers.get(task.family)
        if dispatcher is None:
            raise TesseraError(f"family {task.family} is not deployed",
                               code="model_not_supported")
        queued = self.ledger.queued_in(task.family)
        if queued >= dispatcher.settings.max_queued:
            raise QueueFullError(f"the {task.family} queue is full ({queued} tasks); retry "
                                 "later", headers={"Retry-After": "5"})
        queued = self.ledger.queued_by(task.tenant)
        if queued >= self._limits.max_queued_per_tenant:
            raise RateLimitedError(f"you have {queued} queued tasks, the most allowed; wait for "
                                   "some to finish", headers={"Retry-After": "5"})
        await self.ledger.add(task)
        return self.ledger.snapshot(task)

    async def get(self, task_id: str, tenant: str) -> Task:
        await self._ready.wait()
        return await self._view(await self.ledger.find(task_id, tenant))

    async def wait(self, task_id: str, tenant: str, timeout_s: float) -> Task:
        """Like `get`, but first waits up to timeout_s for the task to end."""
        await self._ready.wait()
        return await self._view(await self.ledger.wait(task_id, tenant, timeout_s))

    async def _view(self, task: Task) -> Task:
        """The task as a reader sees it: its place in the queue, its webhook's state."""
        snapshot = self.ledger.snapshot(task)
        snapshot.webhook_state = await self.outbox.state(task)
        return snapshot

    async def webhook_secret(self, tenant: str) -> str:
        await self._ready.wait()
        return await self.outbox.secret(tenant)

    async def watch(self, task_id: str, tenant: str, after: int, timeout_s: float) -> Task:
        """The task once it changed past event `after` (or ended), or after timeout_s: what
        the events stream sends."""
        await self._ready.wait()
        return await self._view(await self.ledger.watch(task_id, tenant, after, timeout_s))

    async def cancel(self, task_id: str, tenant: str) -> Task:
        await self._ready.wait()
        task = await self.ledger.find(task_id, tenant)
        # one read back from the database has ended: task_not_cancelable
        self.ledger.cancel(self.ledger.live(task.id) or task)
        await self.ledger.settled(task.id)
        return await self._view(task)

    def _stop_dispatch(self, task: Task) -> None:
        dispatcher = self._dispatchers.get(task.family)
        if dispatcher is not None:
            dispatcher.stop(task.id)

    async def list(self, tenant: str, status: str | None = None, limit: int = 50,
                   before: tuple[float, str] | None = None) -> list[Task]:
        """The tenant's newest tasks first (those created before `before`: the next page)."""
        await self._ready.wait()
        return [await self._view(t)
                for t in await self.ledger.newest(tenant, status, limit, before)]

    async def stats(self) -> dict:
        await self._ready.wait()
        return {**self.ledger.counts(), "commits": self.ledger.commits,
                "inflight": sum(len(d.running()) for d in self._dispatchers.values())}

    async def sweep(self, now: float | None = None) -> dict:
        await self._ready.wait()
        return await self._retention.sweep(now)

    async def close(self) -> None:
        """Stop dispatching and writing (what a dead process does; in-process for tests)."""
        pending = [d.loop for d in self._dispatchers.values()] + [
            t for d in self._dispatchers.values() for t in d.running()]
        pending += self._background
        if self.ledger is not None:
            pending.extend(self.ledger.workers())
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self.outbox is not None:
            await self.outbox.close()
        if self._engine is not None:
            self._engine.dispose()

    async def _watch(self) -> None:
        """Deadlines (nothing stays in progress for ever) and memory (finished tasks go)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for task in self.ledger.unfinished():
                if now > task.deadline_at:
                    self.ledger.fail(task, "timeout",
                                     "the task did not finish before its deadline")
            self.ledger.evict(now)


# Ray restarts the actor when its process dies, and retries the calls that were in flight;
# every start reloads the unfinished tasks from the database.
TaskManagerActor = ray.remote(num_cpus=0, max_concurrency=10_000, max_restarts=-1,
                              max_task_retries=-1)(TaskManager)

# State actors live on the head node: GPU workers come and go with the autoscaler, and the
# single writer of task state must not go with them.
ON_HEAD = {"node:__internal_head__": 0.001}


def task_manager(instance: str, config: dict | None = None,
                 handles: dict[str, Any] | None = None):
    """The instance's one task actor, created (with its config and family handles) by whoever
    asks first."""
    return TaskManagerActor.options(name=f"{instance}-tasks", namespace=NAMESPACE,
                                    lifetime="detached", get_if_exists=True,
                                    resources=ON_HEAD).remote(config, handles)
