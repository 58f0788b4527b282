"""Every task the actor knows and the queues they wait in: the single writer of task state.

All transitions go through here (with their metrics), whoever causes them: a submission, an
event from a family server's stream, the deadline watchdog, retention.
"""

from __future__ import annotations

import collections

from serve_app.core.errors import ExpiredError, TaskNotFoundError
from serve_app.core.metrics import m
from serve_app.core.types import GenerateResult
from serve_app.tasks.queue import FairQueue
from serve_app.tasks.state import COMPLETED, FAILED, IN_PROGRESS, QUEUED, Task


class Ledger:
    def __init__(self):
        self.tasks: dict[str, Task] = {}
        self.queues: dict[str, FairQueue] = {}
        self.expired: dict[str, str] = {}  # task id -> tenant, after retention removed it
        self.retention_days: float | None = None

    def add(self, task: Task) -> None:
        self.tasks[task.id] = task
        queue = self.queues[task.family]
        queue.push(task.tenant, task.id)
        m().tasks.inc(1, tags={"status": QUEUED, "family": task.family})
        m().queue_depth.set(len(queue), tags={"family": task.family})

    def find(self, task_id: str, tenant: str) -> Task:
        t = self.tasks.get(task_id)
        if t is None and self.expired.get(task_id) == tenant:
            raise ExpiredError(f"task {task_id!r} and its images were removed after the "
                               f"{self.retention_days}-day retention period", param="task_id")
        if t is None or t.tenant != tenant:
            raise TaskNotFoundError(f"task {task_id!r} not found", param="task_id")
        return t

    def snapshot(self, t: Task) -> Task:
        """The task as a reader sees it now, with its place in the queue."""
        position = None
        if t.status == QUEUED:
            # None from the queue means it was already handed to a replica: next to start.
            position = self.queues[t.family].position(t.tenant, t.id) or 0
        return t.model_copy(update={"queue_position": position}, deep=True)

    def queued_by(self, tenant: str) -> int:
        return sum(q.tenant_depth(tenant) for q in self.queues.values())

    def counts(self) -> dict:
        return {"tasks": dict(collections.Counter(t.status for t in self.tasks.values())),
                "queued": {name: len(q) for name, q in self.queues.items()}}

    # ------------------------------------------------------------ transitions (+ metrics)

    def start(self, task: Task) -> None:
        task.transition(IN_PROGRESS)
        tags = {"family": task.family}
        m().tasks.inc(1, tags={"status": IN_PROGRESS, **tags})
        m().queue_wait.observe(task.started_at - task.created_at, tags=tags)

    def complete(self, task: Task, output: GenerateResult) -> None:
        task.complete(output)
        tags = {"family": task.family}
        m().tasks.inc(1, tags={"status": COMPLETED, **tags})
        m().images.inc(len(output.images), tags=tags)
        m().end_to_end.observe(task.completed_at - task.created_at, tags=tags)

    def fail(self, task: Task, code: str, message: str) -> None:
        if not task.done:
            task.fail(code, message)
            self.queues[task.family].remove(task.tenant, task.id)
            m().tasks.inc(1, tags={"status": FAILED, "family": task.family})
            m().errors.inc(1, tags={"code": code, "family": task.family})

    def requeue(self, task: Task) -> None:
        """Back to the front of its tenant's queue: the replica running it was lost."""
        if task.status == IN_PROGRESS:
            task.transition(QUEUED)
        self.queues[task.family].push(task.tenant, task.id, front=True)
