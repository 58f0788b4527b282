"""Task state and dispatch.

`Task` is the state machine (queued -> in_progress -> completed | failed, every transition
timestamped). `TaskManager` is the single writer of task state: the ingress submits to it and
reads from it, family replicas tell it when they start, and it alone decides completion and
failure. It also dispatches: per family, a queue served round-robin across tenants, sent to the
family deployment through a DeploymentHandle with a bounded number in flight.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import ray

from serve_app.errors import (
    ExpiredError,
    QueueFullError,
    RateLimitedError,
    TaskNotFoundError,
    TesseraError,
)
from serve_app.metrics import m
from serve_app.telemetry import (
    extract,
    inject,
    setup_logging,
    setup_tracing,
    task_attributes,
    tracer,
)

logger = logging.getLogger("tessera.tasks")

NAMESPACE = "tessera"
QUEUED, IN_PROGRESS, COMPLETED, FAILED = "queued", "in_progress", "completed", "failed"
TERMINAL = frozenset({COMPLETED, FAILED})
# in_progress -> queued is the retry after the replica running the task died.
TRANSITIONS = {
    QUEUED: frozenset({IN_PROGRESS, FAILED}),
    IN_PROGRESS: frozenset({COMPLETED, FAILED, QUEUED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
}
MAX_ATTEMPTS = 3


class InvalidTransitionError(Exception):
    pass


@dataclass
class Task:
    id: str
    tenant: str
    model: str
    family: str
    source: str
    params: dict[str, Any]
    created_at: float
    deadline_at: float
    price_per_image: float = 0.0
    currency: str = "USD"
    request: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    status: str = QUEUED
    updated_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    attempts: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    trace: dict[str, str] = field(default_factory=dict)  # W3C carrier of the submit request

    def __post_init__(self):
        if not self.history:
            self.history.append({"status": QUEUED, "at": self.created_at})
            self.updated_at = self.created_at

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def transition(self, status: str, now: float | None = None, **fields) -> None:
        if status not in TRANSITIONS[self.status]:
            raise InvalidTransitionError(f"task {self.id}: {self.status} -> {status}")
        now = time.time() if now is None else now
        self.status = status
        self.updated_at = now
        self.history.append({"status": status, "at": now, **(
            {"reason": fields["error"]["code"]} if "error" in fields else {})})
        if status == IN_PROGRESS:
            self.started_at = now
        if status in TERMINAL:
            self.completed_at = now
        for name, value in fields.items():
            setattr(self, name, value)

    def complete(self, output: dict, now: float | None = None) -> None:
        now = time.time() if now is None else now
        images = output["images"]
        w, h = output["width"], output["height"]
        usage = {
            "images": len(images),
            # 16x16-pixel patches, the unit hosted image APIs bill output by
            "output_tokens": (w // 16) * (h // 16) * len(images),
            "cost": round(self.price_per_image * len(images), 6),
            "currency": self.currency,
            "runtime_ms": round((now - (self.started_at or now)) * 1000, 2),
        }
        self.transition(COMPLETED, now, result={
            "images": images, "width": w, "height": h, "usage": usage,
            "timings_ms": output.get("timings_ms", {})})

    def fail(self, code: str, message: str, now: float | None = None) -> None:
        self.transition(FAILED, now, error={"code": code, "message": message})

    def view(self) -> dict[str, Any]:
        out = asdict(self)
        for private in ("params", "source", "deadline_at", "price_per_image", "currency",
                        "trace"):
            out.pop(private)
        return out


class FairQueue:
    """Per-family queue: one FIFO per tenant, tenants served round-robin."""

    def __init__(self):
        self._by_tenant: collections.OrderedDict[str, collections.deque[str]] = (
            collections.OrderedDict())
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_tenant.values())

    def tenant_depth(self, tenant: str) -> int:
        return len(self._by_tenant.get(tenant, ()))

    def push(self, tenant: str, task_id: str, front: bool = False) -> None:
        q = self._by_tenant.setdefault(tenant, collections.deque())
        q.appendleft(task_id) if front else q.append(task_id)
        self.changed.set()

    def pop(self) -> str | None:
        for tenant in list(self._by_tenant):
            q = self._by_tenant[tenant]
            if q:
                task_id = q.popleft()
                self._by_tenant.move_to_end(tenant)  # next turn goes to the next tenant
                if not q:
                    del self._by_tenant[tenant]
                return task_id
            del self._by_tenant[tenant]
        return None

    def remove(self, tenant: str, task_id: str) -> None:
        q = self._by_tenant.get(tenant)
        if q is not None and task_id in q:
            q.remove(task_id)

    def position(self, tenant: str, task_id: str) -> int | None:
        """How many tasks round-robin dispatches before this one (0 = next)."""
        q = self._by_tenant.get(tenant)
        if q is None or task_id not in q:
            return None
        index = q.index(task_id)
        ahead = index
        for other, oq in self._by_tenant.items():
            if other == tenant:
                continue
            # tenants before ours in rotation order get one more turn at our index
            before = list(self._by_tenant).index(other) < list(self._by_tenant).index(tenant)
            ahead += min(len(oq), index + (1 if before else 0))
        return ahead


def unwrap_error(exc: BaseException) -> BaseException:
    """Ray wraps a replica's exception; the original (with its fields) is in `.cause`."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _replica_lost(exc: BaseException) -> bool:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(exc, (ActorDiedError, ActorUnavailableError, RayActorError))


class TaskManager:
    def __init__(self):
        self._tasks: dict[str, Task] = {}
        self._queues: dict[str, FairQueue] = {}
        self._handles: dict[str, Any] = {}
        self._settings: dict[str, dict] = {}
        self._limits = {"max_queued_per_tenant": 500}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._loops: dict[str, asyncio.Task] = {}
        self._watchdog: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        self._inflight: dict[str, Any] = {}
        self._expired: dict[str, str] = {}  # task id -> tenant, after retention removed it
        self._store = None
        self._retention_days: float | None = None

    # ------------------------------------------------------------ configuration

    async def configure(self, config: dict, handles: dict[str, Any]) -> None:
        """Called by every ingress replica at start: the config and the family handles."""
        from serve_app.config import TesseraConfig
        from serve_app.storage import make_store

        cfg = TesseraConfig.model_validate(config)
        setup_tracing(cfg.tracing, cfg.data_dir, "task-actor")
        setup_logging()
        self._limits = cfg.limits.model_dump()
        families = {name: s.model_dump() for name, s in cfg.enabled_families().items()}
        self._store = make_store(cfg)
        self._retention_days = cfg.storage.retention_days
        if self._retention_days and (self._sweeper is None or self._sweeper.done()):
            self._sweeper = asyncio.create_task(
                self._sweep_forever(cfg.storage.retention_sweep_interval_s))
        for name, settings in families.items():
            self._handles[name] = handles[name]
            self._settings[name] = settings
            self._queues.setdefault(name, FairQueue())
            if name not in self._slots:
                self._slots[name] = asyncio.Semaphore(_dispatch_slots(settings))
            if name not in self._loops or self._loops[name].done():
                self._loops[name] = asyncio.create_task(self._dispatch_loop(name))
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch_deadlines())

    async def ping(self) -> bool:
        return True

    # ------------------------------------------------------------ the API's side

    async def submit(self, task: dict) -> dict:
        t = Task(**task)
        queue = self._queues.get(t.family)
        if queue is None:
            raise TesseraError(f"family {t.family} is not deployed", code="model_not_supported")
        settings = self._settings[t.family]
        if len(queue) >= settings["max_queued"]:
            raise QueueFullError(f"the {t.family} queue is full ({len(queue)} tasks); retry "
                                 "later", headers={"Retry-After": "5"})
        queued = sum(q.tenant_depth(t.tenant) for q in self._queues.values())
        if queued >= self._limits["max_queued_per_tenant"]:
            raise RateLimitedError(f"you have {queued} queued tasks, the most allowed; wait for "
                                   "some to finish", headers={"Retry-After": "5"})
        self._tasks[t.id] = t
        queue.push(t.tenant, t.id)
        m().tasks.inc(1, tags={"status": QUEUED, "family": t.family})
        m().queue_depth.set(len(queue), tags={"family": t.family})
        return self._view(t)

    async def get(self, task_id: str, tenant: str) -> dict:
        t = self._tasks.get(task_id)
        if t is None and self._expired.get(task_id) == tenant:
            raise ExpiredError(f"task {task_id!r} and its images were removed after the "
                               f"{self._retention_days}-day retention period", param="task_id")
        if t is None or t.tenant != tenant:
            raise TaskNotFoundError(f"task {task_id!r} not found", param="task_id")
        return self._view(t)

    async def list(self, tenant: str, status: str | None = None, limit: int = 50) -> list[dict]:
        """The tenant's newest tasks first."""
        mine = [t for t in self._tasks.values()
                if t.tenant == tenant and (status is None or t.status == status)]
        mine.sort(key=lambda t: t.created_at, reverse=True)
        return [self._view(t) for t in mine[:limit]]

    async def stats(self) -> dict:
        counts = collections.Counter(t.status for t in self._tasks.values())
        return {"tasks": dict(counts),
                "queued": {name: len(q) for name, q in self._queues.items()},
                "inflight": len(self._inflight)}

    def _view(self, t: Task) -> dict:
        out = t.view()
        if t.status == QUEUED:
            # None from the queue means it was already handed to a replica: next to start.
            out["queue_position"] = self._queues[t.family].position(t.tenant, t.id) or 0
        else:
            out["queue_position"] = None
        return out

    # ------------------------------------------------------------ the replicas' side

    async def mark_started(self, task_id: str) -> None:
        t = self._tasks.get(task_id)
        if t is not None and t.status == QUEUED:
            self._start(t)

    # ------------------------------------------------------------ transitions (+ metrics)

    def _start(self, task: Task) -> None:
        task.transition(IN_PROGRESS)
        tags = {"family": task.family}
        m().tasks.inc(1, tags={"status": IN_PROGRESS, **tags})
        m().queue_wait.observe(task.started_at - task.created_at, tags=tags)

    def _complete(self, task: Task, output: dict) -> None:
        if task.status == QUEUED:  # the replica's start notice may still be on its way
            self._start(task)
        task.complete(output)
        tags = {"family": task.family}
        m().tasks.inc(1, tags={"status": COMPLETED, **tags})
        m().images.inc(len(output["images"]), tags=tags)
        m().end_to_end.observe(task.completed_at - task.created_at, tags=tags)

    # ------------------------------------------------------------ dispatch

    async def _dispatch_loop(self, family: str) -> None:
        queue, slots = self._queues[family], self._slots[family]
        while True:
            await slots.acquire()
            task = None
            while task is None:
                task_id = queue.pop()
                if task_id is None:
                    queue.changed.clear()
                    await queue.changed.wait()
                    continue
                candidate = self._tasks.get(task_id)
                task = candidate if candidate is not None and not candidate.done else None
            m().queue_depth.set(len(queue), tags={"family": family})
            self._inflight[task.id] = asyncio.create_task(self._traced_run(task, slots))

    async def _traced_run(self, task: Task, slots: asyncio.Semaphore) -> None:
        """Continue the submit request's trace: the wait in the queue, then the dispatch."""
        attrs = task_attributes(task.id, task.tenant, task.model, task.family,
                                **{"tessera.attempt": task.attempts + 1})
        parent = extract(task.trace)
        queued = tracer().start_span("tessera.queue", context=parent, attributes=attrs,
                                     start_time=int(task.created_at * 1e9))
        queued.end()
        with tracer().start_as_current_span("tessera.dispatch", context=parent,
                                            attributes=attrs) as span:
            task.params["trace_context"] = inject()
            await self._run(task, slots)
            span.set_attribute("tessera.status", task.status)
            if task.error:
                span.set_attribute("tessera.error_code", task.error["code"])

    async def _run(self, task: Task, slots: asyncio.Semaphore) -> None:
        task.attempts += 1
        response = None
        try:
            handle = self._handles[task.family].options(multiplexed_model_id=task.source)
            response = handle.generate.remote(task.params)
            result = asyncio.ensure_future(_await(response))
            if not await self._started_in_time(task, result):
                response.cancel()
                result.cancel()
                return
            output = await asyncio.wait_for(result,
                                            timeout=max(task.deadline_at - time.time(), 0.01))
            if not task.done:
                self._complete(task, output)
        except asyncio.TimeoutError:
            if response is not None:
                response.cancel()
            self._fail(task, "timeout", "the task did not finish before its deadline")
        except Exception as exc:  # every failure must end the task, never leave it running
            err = unwrap_error(exc)
            if _replica_lost(err) and task.attempts < MAX_ATTEMPTS and not task.done:
                logger.warning("replica lost while running %s; requeueing", task.id)
                if task.status == IN_PROGRESS:
                    task.transition(QUEUED)
                self._queues[task.family].push(task.tenant, task.id, front=True)
            elif isinstance(err, TesseraError):
                self._fail(task, err.code, err.message)
            else:
                logger.exception("task %s failed", task.id)
                self._fail(task, "generation_failed", f"{type(err).__name__}: {err}"[:500])
        finally:
            self._inflight.pop(task.id, None)
            slots.release()

    async def _started_in_time(self, task: Task, result: asyncio.Future) -> bool:
        """The family's cold-start deadline: from hand-off to the pipeline starting."""
        limit = self._settings[task.family].get("cold_start_deadline_s")
        if not limit or limit >= task.deadline_at - time.time():
            return True
        await asyncio.wait({result}, timeout=limit)
        if result.done() or task.status != QUEUED:
            return True
        self._fail(task, "cold_start_timeout",
                   f"no {task.family} replica started the task within {limit:g} s of it being "
                   "handed to the family (scaling up from zero, placing it on a GPU node and "
                   "loading the model must fit in that); retry later")
        return False

    def _fail(self, task: Task, code: str, message: str) -> None:
        if not task.done:
            task.fail(code, message)
            self._queues[task.family].remove(task.tenant, task.id)
            m().tasks.inc(1, tags={"status": FAILED, "family": task.family})
            m().errors.inc(1, tags={"code": code, "family": task.family})

    async def sweep(self, now: float | None = None) -> dict:
        """Retention: drop finished tasks older than the period, their images, and strays."""
        cutoff = (now or time.time()) - self._retention_days * 86400
        old = [t for t in self._tasks.values() if t.done and (t.completed_at or 0) < cutoff]
        keys = [im["key"] for t in old if t.result for im in t.result["images"]]
        if keys:
            await self._store.delete_async(keys)
        for t in old:
            del self._tasks[t.id]
            self._expired[t.id] = t.tenant
        strays = await asyncio.to_thread(self._store.delete_older_than, cutoff)
        return {"tasks": len(old), "objects": len(keys) + strays}

    async def _sweep_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                removed = await self.sweep()
                if removed["tasks"] or removed["objects"]:
                    logger.info("retention removed %s", removed)
            except Exception:  # a store outage must not end the sweeper for good
                logger.exception("retention sweep failed; retrying next interval")

    async def _watch_deadlines(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for task in list(self._tasks.values()):
                if not task.done and now > task.deadline_at:
                    self._fail(task, "timeout", "the task did not finish before its deadline")


async def _await(response):
    return await response


def _dispatch_slots(settings: dict) -> int:
    if settings.get("dispatch_concurrency"):
        return settings["dispatch_concurrency"]
    replicas = settings.get("num_replicas") or settings["autoscaling"]["max_replicas"]
    return max(1, replicas * settings["max_ongoing_requests"])


TaskManagerActor = ray.remote(num_cpus=0, max_concurrency=10_000)(TaskManager)


# State actors live on the head node: GPU workers come and go with the autoscaler, and the
# single writer of task state must not go with them.
ON_HEAD = {"node:__internal_head__": 0.001}


def task_manager(instance: str):
    """The instance's one task actor, created by whoever asks first."""
    return TaskManagerActor.options(name=f"{instance}-tasks", namespace=NAMESPACE,
                                    lifetime="detached", get_if_exists=True,
                                    resources=ON_HEAD).remote()
