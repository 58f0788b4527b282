"""The task actor: one per Tessera instance (`<instance>-tasks` in the Ray namespace `tessera`),
the single writer of task state.

The ingress submits `Task` records and reads them back; the actor queues them per family,
dispatches them to the family servers and consumes their event streams (`dispatch`), fails what
passes its deadline, and applies retention. Family servers never call it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray

from serve_app.core.config import TesseraConfig
from serve_app.core.errors import QueueFullError, RateLimitedError, TesseraError
from serve_app.core.storage import make_store
from serve_app.core.telemetry import setup_logging, setup_tracing
from serve_app.tasks.dispatch import FamilyDispatcher
from serve_app.tasks.ledger import Ledger
from serve_app.tasks.queue import FairQueue
from serve_app.tasks.retention import Retention
from serve_app.tasks.state import Task

NAMESPACE = "tessera"


class TaskManager:
    def __init__(self):
        self.ledger = Ledger()
        self._dispatchers: dict[str, FamilyDispatcher] = {}
        self._limits = {"max_queued_per_tenant": 500}
        self._watchdog: asyncio.Task | None = None
        self._retention: Retention | None = None
        self._sweeper: asyncio.Task | None = None
        self._store = None

    # ------------------------------------------------------------ configuration

    async def configure(self, config: dict, handles: dict[str, Any]) -> None:
        """Called by every ingress replica at start: the config and the family handles."""
        cfg = TesseraConfig.model_validate(config)
        setup_tracing(cfg.tracing, cfg.data_dir, "task-actor")
        setup_logging()
        self._limits = cfg.limits.model_dump()
        self._store = make_store(cfg)
        days = cfg.storage.retention_days
        self.ledger.retention_days = days
        if days:
            self._retention = Retention(self.ledger, self._store, days)
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = asyncio.create_task(
                    self._retention.forever(cfg.storage.retention_sweep_interval_s))
        for name, settings in cfg.enabled_families().items():
            self.ledger.queues.setdefault(name, FairQueue())
            current = self._dispatchers.get(name)
            if current is None or current.loop.done():
                self._dispatchers[name] = FamilyDispatcher(self.ledger, name, handles[name],
                                                           settings.model_dump())
            else:
                current.handle = handles[name]
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch_deadlines())

    async def ping(self) -> bool:
        return True

    # ------------------------------------------------------------ the API's side

    async def submit(self, task: Task) -> Task:
        dispatcher = self._dispatchers.get(task.family)
        if dispatcher is None:
            raise TesseraError(f"family {task.family} is not deployed",
                               code="model_not_supported")
        queue = self.ledger.queues[task.family]
        if len(queue) >= dispatcher.settings["max_queued"]:
            raise QueueFullError(f"the {task.family} queue is full ({len(queue)} tasks); retry "
                                 "later", headers={"Retry-After": "5"})
        queued = self.ledger.queued_by(task.tenant)
        if queued >= self._limits["max_queued_per_tenant"]:
            raise RateLimitedError(f"you have {queued} queued tasks, the most allowed; wait for "
                                   "some to finish", headers={"Retry-After": "5"})
        self.ledger.add(task)
        return self.ledger.snapshot(task)

    async def get(self, task_id: str, tenant: str) -> Task:
        return self.ledger.snapshot(self.ledger.find(task_id, tenant))

    async def list(self, tenant: str, status: str | None = None, limit: int = 50) -> list[Task]:
        """The tenant's newest tasks first."""
        mine = [t for t in self.ledger.tasks.values()
                if t.tenant == tenant and (status is None or t.status == status)]
        mine.sort(key=lambda t: t.created_at, reverse=True)
        return [self.ledger.snapshot(t) for t in mine[:limit]]

    async def stats(self) -> dict:
        return {**self.ledger.counts(),
                "inflight": sum(len(d.inflight) for d in self._dispatchers.values())}

    async def sweep(self, now: float | None = None) -> dict:
        return await self._retention.sweep(now)

    async def _watch_deadlines(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for task in list(self.ledger.tasks.values()):
                if not task.done and now > task.deadline_at:
                    self.ledger.fail(task, "timeout",
                                     "the task did not finish before its deadline")


TaskManagerActor = ray.remote(num_cpus=0, max_concurrency=10_000)(TaskManager)

# State actors live on the head node: GPU workers come and go with the autoscaler, and the
# single writer of task state must not go with them.
ON_HEAD = {"node:__internal_head__": 0.001}


def task_manager(instance: str):
    """The instance's one task actor, created by whoever asks first."""
    return TaskManagerActor.options(name=f"{instance}-tasks", namespace=NAMESPACE,
                                    lifetime="detached", get_if_exists=True,
                                    resources=ON_HEAD).remote()
