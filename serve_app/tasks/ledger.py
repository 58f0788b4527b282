"""Every task the actor holds and the queues they wait in: the single writer of task state.

All transitions go through here (with their metrics), whoever causes them: a submission, an
event from a family server's stream, the deadline watchdog, retention. Each is written through
the journal: a submission is committed before it is accepted (its dispatch may start meanwhile);
a transition is applied in memory and committed, and a reader waits for that commit before it
sees the task. Finished tasks leave memory after `keep_finished_s` and are read from the
database from then on.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Callable

from serve_app.core.errors import (
    ExpiredError,
    ServiceUnavailableError,
    TaskNotCancelableError,
    TaskNotFoundError,
)
from serve_app.core.metrics import m
from serve_app.core.tasks import COMPLETED, FAILED, IN_PROGRESS, QUEUED, Task, TaskProgress
from serve_app.core.types import GenerateResult
from serve_app.db import tasks as task_rows
from serve_app.db.engine import run
from serve_app.tasks.journal import Journal, unavailable
from serve_app.tasks.queue import FairQueue


def event_seq(task: Task) -> int:
    """A number that grows with every change a watcher sees (transitions, steps): the id of
    the task's events stream, so a client that reconnects resumes after what it saw."""
    return len(task.history) * 1000 + (task.progress.step if task.progress else 0)


def _no_deliveries(task: Task) -> list[dict]:
    return []


@dataclass(frozen=True)
class LedgerHooks:
    """What the ledger tells its neighbours, given when it is made: the webhook deliveries a
    start or an end makes (committed with that transition) and a call once they are stored
    (the outbox), and how a task's dispatch is stopped (the dispatchers)."""

    on_start: Callable[[Task], list[dict]] = _no_deliveries
    on_end: Callable[[Task], list[dict]] = _no_deliveries
    on_stored: Callable[[], None] = lambda: None
    stop_dispatch: Callable[[Task], None] = lambda task: None


class Ledger:
    def __init__(self, journal: Journal, families: list[str], hooks: LedgerHooks = LedgerHooks(),
                 read_wait_s: float = 5.0, keep_finished_s: float = 300.0,
                 retention_days: float | None = None, tasks: dict[str, Task] | None = None):
        self.journal = journal
        self.hooks = hooks
        self.read_wait_s = read_wait_s
        self.keep_finished_s = keep_finished_s
        self.retention_days = retention_days
        # the tasks in memory (the webhook outbox reads the same dict)
        self.tasks: dict[str, Task] = {} if tasks is None else tasks
        self.queues: dict[str, FairQueue] = {name: FairQueue() for name in families}
        self._changed: dict[str, asyncio.Event] = {}  # tasks someone watches, set on a change
        self._finished: dict[str, asyncio.Event] = {}  # tasks someone waits for, set at the end
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # ------------------------------------------------------------ writes

    async def add(self, task: Task) -> None:
        """Accept a task once it is stored. It is queued while its commit runs, so its
        dispatch to a replica overlaps the commit instead of waiting for it; a commit the
        database refuses withdraws it (out of the queue, its dispatch stopped) and nothing of
        it is ever written."""
        stored = self.journal.save(task, durable=True)
        self._enqueue(task)
        self.schedule_deadline(task)
        try:
            await stored
        except ServiceUnavailableError:
            self._withdraw(task)
            raise
        m().tasks.inc(1, tags={"status": QUEUED, "family": task.family})

    def _withdraw(self, task: Task) -> None:
        self.queues[task.family].remove(task.tenant, task.id)
        self.tasks.pop(task.id, None)
        self._drop_timer(task.id)
        self.hooks.stop_dispatch(task)

    def _drop_timer(self, task_id: str) -> None:
        timer = self._timers.pop(task_id, None)
        if timer is not None:
            timer.cancel()

    def restore(self, task: Task) -> None:
        """A task found unfinished in the database at start: queued again, in its old order;
        one that was running is queued again with its attempt count (that attempt is lost)."""
        if task.status == IN_PROGRESS:
            task.transition(QUEUED)
            self.journal.save(task)
        self._enqueue(task)
        self.schedule_deadline(task)

    def schedule_deadline(self, task: Task) -> None:
        """The client's deadline (cancel_after): a timer, not a sweep, so it is kept to the
        moment."""
        if task.cancel_at is not None:
            delay = max(0.0, task.cancel_at - time.time())
            self._timers[task.id] = asyncio.get_running_loop().call_later(
                delay, self._deadline_passed, task.id)

    def _deadline_passed(self, task_id: str) -> None:
        self._timers.pop(task_id, None)
        task = self.tasks.get(task_id)
        if task is not None and not task.done:
            self.cancel(task, "deadline_exceeded", "the task's cancel_after deadline passed "
                        + ("before it started" if task.status == QUEUED else "while it ran"))

    def _enqueue(self, task: Task) -> None:
        self.tasks[task.id] = task
        queue = self.queues[task.family]
        queue.push(task.tenant, task.id)
        m().queue_depth.set(len(queue), tags={"family": task.family})

    def attempt(self, task: Task) -> int:
        """A new attempt at the task begins (its dispatch to a replica): its number. Counted in
        memory; the attempt's start or requeue commits it."""
        task.attempts += 1
        return task.attempts

    def start(self, task: Task) -> None:
        task.transition(IN_PROGRESS)
        self._save(task, self.hooks.on_start(task))
        self._touch(task.id)
        tags = {"family": task.family}
        m().tasks.inc(1, tags={"status": IN_PROGRESS, **tags})
        m().queue_wait.observe(task.started_at - task.created_at, tags=tags)

    def complete(self, task: Task, output: GenerateResult) -> None:
        task.complete(output)
        self._save(task, self.hooks.on_end(task))
        self._ended(task)
        tags = {"family": task.family}
        m().tasks.inc(1, tags={"status": COMPLETED, **tags})
        m().images.inc(len(output.images), tags=tags)
        m().end_to_end.observe(task.completed_at - task.created_at, tags=tags)

    def fail(self, task: Task, code: str, message: str) -> None:
        if not task.done:
            task.fail(code, message)
            self._save(task, self.hooks.on_end(task))
            self._ended(task)
            self.queues[task.family].remove(task.tenant, task.id)
            m().tasks.inc(1, tags={"status": FAILED, "family": task.family})
            m().errors.inc(1, tags={"code": code, "family": task.family})

    def cancel(self, task: Task, code: str | None = None, message: str = "") -> None:
        """Canceled (or aborted, at its deadline before it started) now; its dispatch, and the
        pipeline call if it was the call's last task, stop."""
        if task.done:
            raise TaskNotCancelableError(
                f"task {task.id} is {task.status}: only a queued or running task can be "
                "canceled", param="task_id")
        task.cancel(code, message)
        self._save(task, self.hooks.on_end(task))
        self.queues[task.family].remove(task.tenant, task.id)
        self._ended(task)
        self.hooks.stop_dispatch(task)
        m().tasks.inc(1, tags={"status": task.status, "family": task.family})

    def requeue(self, task: Task) -> None:
        """Back to the front of its tenant's queue: the replica running it was lost."""
        if task.status == IN_PROGRESS:
            task.transition(QUEUED)
            self.journal.save(task)
            self._touch(task.id)
        self.queues[task.family].push(task.tenant, task.id, front=True)

    def _ended(self, task: Task) -> None:
        self._drop_timer(task.id)
        self._touch(task.id)
        event = self._finished.pop(task.id, None)
        if event is not None:
            event.set()

    def _save(self, task: Task, deliveries: list[dict]) -> None:
        future = self.journal.save(task, deliveries=deliveries)
        if deliveries:  # the outbox sends them once they are stored
            future.add_done_callback(lambda _: self.hooks.on_stored())

    def _touch(self, task_id: str) -> None:
        event = self._changed.pop(task_id, None)
        if event is not None:
            event.set()

    async def watch(self, task_id: str, tenant: str, after: int, timeout_s: float) -> Task:
        """The task once its event_seq is past `after` (and committed, for a transition), or
        when it has ended, or as it is after timeout_s."""
        task = await self.find(task_id, tenant)
        deadline = time.monotonic() + timeout_s
        while not task.done and event_seq(task) <= after:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await self._signal(self._changed, task_id, left)
            task = await self.find(task_id, tenant)
        return task

    async def wait(self, task_id: str, tenant: str, timeout_s: float) -> Task:
        """The task once it has ended (and that is committed), or as it is after timeout_s.
        Only the end wakes it, not each step on the way."""
        task = await self.find(task_id, tenant)
        if not task.done:  # no await between this check and registering: no end is missed
            await self._signal(self._finished, task_id, timeout_s)
            task = await self.find(task_id, tenant)
        return task

    @staticmethod
    async def _signal(events: dict[str, asyncio.Event], task_id: str, timeout_s: float) -> None:
        """Until the task's event in `events` is set, or timeout_s."""
        event = events.setdefault(task_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass

    def progress(self, task: Task, step: int, total_steps: int,
                 preview: str | None = None) -> None:
        """Where the running attempt is: shown to readers, not a transition, not committed."""
        if task.status == IN_PROGRESS:
            task.progress = TaskProgress(step=step, total_steps=total_steps)
            if preview is not None:
                task.preview_image = preview
            self._touch(task.id)

    def forget(self, task_id: str) -> None:
        self.tasks.pop(task_id, None)

    def fail_unrunnable(self, task: Task, code: str, message: str) -> None:
        """A task found unfinished at start that cannot run here any more: failed, stored."""
        self.tasks[task.id] = task
        self.fail(task, code, message)

    async def next_for(self, family: str) -> Task:
        """The family's next task to dispatch (round-robin across tenants), once there is one."""
        queue = self.queues[family]
        while True:
            task_id = queue.pop()
            if task_id is None:
                queue.changed.clear()
                await queue.changed.wait()
                continue
            task = self.tasks.get(task_id)
            if task is not None and not task.done:
                m().queue_depth.set(len(queue), tags={"family": family})
                return task

    def queued_in(self, family: str) -> int:
        return len(self.queues[family])

    def live(self, task_id: str) -> Task | None:
        """The task as held in memory, or None once it has left."""
        return self.tasks.get(task_id)

    def unfinished(self) -> list[Task]:
        return [t for t in self.tasks.values() if not t.done]

    @property
    def engine(self):
        return self.journal.engine

    def workers(self) -> list[asyncio.Task]:
        """Its background work (the journal's writer), for whoever stops the actor."""
        return [self.journal.worker]

    @property
    def commits(self) -> int:
        return self.journal.commits

    async def settled(self, task_id: str) -> None:
        """Until the task's latest change is committed (503 past read_wait_s)."""
        await self.journal.settled(task_id, self.read_wait_s)

    # ------------------------------------------------------------ reads

    async def find(self, task_id: str, tenant: str) -> Task:
        t = self.tasks.get(task_id)
        if t is not None:
            if t.tenant != tenant:
                raise TaskNotFoundError(f"task {task_id!r} not found", param="task_id")
            await self.journal.settled(task_id, self.read_wait_s)
            return t
        found = await self.db(task_rows.load, self.journal.engine, task_id)
        if found is None or found[0].tenant != tenant:
            raise TaskNotFoundError(f"task {task_id!r} not found", param="task_id")
        task, expired = found
        if expired:
            raise ExpiredError(f"task {task_id!r} and its images were removed after the "
                               f"{self.retention_days}-day retention period", param="task_id")
        return task

    async def stored(self, task_id: str, tenant: str) -> Task | None:
        """The tenant's task as stored, or None where no such task was ever stored."""
        found = await self.db(task_rows.load, self.journal.engine, task_id)
        return found[0] if found is not None and found[0].tenant == tenant else None

    async def newest(self, tenant: str, status: str | None, limit: int,
                     before: tuple[float, str] | None = None) -> list[Task]:
        """The tenant's newest tasks (created before `before`, if given), as committed; those
        still in memory as they are now."""
        stored = await self.db(task_rows.newest, self.journal.engine, tenant, status, limit,
                               before)
        out = []
        for t in stored:
            live = self.tasks.get(t.id)
            if live is not None:
                await self.journal.settled(t.id, self.read_wait_s)
                if status is not None and live.status != status:
                    continue
                t = live
            out.append(t)
        return out

    def snapshot(self, t: Task) -> Task:
        """The task as a reader sees it now, with its place in the queue."""
        position = None
        if t.status == QUEUED and t.family in self.queues:
            # None from the queue means it was already handed to a replica: next to start.
            position = self.queues[t.family].position(t.tenant, t.id) or 0
        return t.model_copy(update={"queue_position": position}, deep=True)

    def queued_by(self, tenant: str) -> int:
        return sum(q.tenant_depth(tenant) for q in self.queues.values())

    def counts(self) -> dict:
        return {"tasks": dict(collections.Counter(t.status for t in self.tasks.values())),
                "queued": {name: len(q) for name, q in self.queues.items()},
                "in_memory": len(self.tasks)}

    def evict(self, now: float | None = None) -> int:
        """Drop finished tasks older than keep_finished_s whose state is committed."""
        cutoff = (now or time.time()) - self.keep_finished_s
        old = [t.id for t in self.tasks.values()
               if t.done and (t.completed_at or 0) <= cutoff and not self.journal.pending(t.id)]
        for task_id in old:
            del self.tasks[task_id]
        return len(old)

    async def db(self, fn, *args):
        try:
            return await asyncio.to_thread(run, fn, *args)
        except Exception as exc:  # the database is away: 503 with Retry-After, never a 500
            raise unavailable(exc) from None
