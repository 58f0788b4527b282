"""Dispatch: per family, the next task round-robin across tenants, sent to the family server.

A bounded number of tasks is in flight per family (`dispatch_concurrency`, default replicas x
`max_ongoing_requests`). Each runs as one streaming call: the server's `Started` event moves the
task to in_progress, its `GenerateResult` completes it. A task whose replica dies is queued
again (up to `MAX_ATTEMPTS`); a task that did not start within the family's cold-start deadline,
or did not finish before its own deadline, fails with the reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from serve_app.core.config import FamilySettings
from serve_app.core.errors import TesseraError, unwrap_remote_error
from serve_app.core.tasks import IN_PROGRESS, MAX_ATTEMPTS, QUEUED, Task
from serve_app.core.telemetry import extract, inject, task_attributes, tracer
from serve_app.core.types import GenerateRequest, GenerateResult, Started, Step
from serve_app.tasks.ledger import Ledger

logger = logging.getLogger("tessera.tasks")


def replica_lost(exc: BaseException) -> bool:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(exc, (ActorDiedError, ActorUnavailableError, RayActorError))


def dispatch_slots(settings: FamilySettings) -> int:
    if settings.dispatch_concurrency:
        return settings.dispatch_concurrency
    replicas = settings.num_replicas or settings.autoscaling.max_replicas
    return max(1, replicas * settings.max_ongoing_requests)


class FamilyDispatcher:
    def __init__(self, ledger: Ledger, family: str, handle: Any, settings: FamilySettings):
        self.ledger = ledger
        self.family = family
        self.handle = handle
        self.settings = settings
        self.slots = asyncio.Semaphore(dispatch_slots(settings))
        self.inflight: dict[str, asyncio.Task] = {}
        self.loop = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self.slots.acquire()
            task = await self.ledger.next_for(self.family)
            run = asyncio.create_task(self._traced_run(task))
            self.inflight[task.id] = run
            # a done callback, not a `finally` in the coroutine: a task cancelled before its
            # coroutine first runs never enters it, and its slot would be lost for good
            run.add_done_callback(functools.partial(self._release, task.id))

    def _release(self, task_id: str, run: asyncio.Task) -> None:
        if self.inflight.get(task_id) is run:
            del self.inflight[task_id]
        self.slots.release()

    def use(self, handle: Any) -> None:
        """A newer handle to the family deployment (an ingress replica started again)."""
        self.handle = handle

    def running(self) -> list[asyncio.Task]:
        """The dispatches in flight, for stats and for stopping the actor."""
        return list(self.inflight.values())

    def stop(self, task_id: str) -> None:
        """Stop a task's dispatch: its stream is cancelled, and with it the task in the
        replica (dropped from the batch queue, or, if it was the last task of a running
        pipeline call, the call at the end of its current step)."""
        running = self.inflight.get(task_id)
        if running is not None:
            running.cancel()

    async def _traced_run(self, task: Task) -> None:
        """Continue the submit request's trace: the wait in the queue, then the dispatch."""
        attrs = task_attributes(task.id, task.tenant, task.model, task.family,
                                **{"tessera.attempt": task.attempts + 1})
        parent = extract(task.trace)
        queued = tracer().start_span("tessera.queue", context=parent, attributes=attrs,
                                     start_time=int(task.created_at * 1e9))
        queued.end()
        with tracer().start_as_current_span("tessera.dispatch", context=parent,
                                            attributes=attrs) as span:
            await self._run(task)
            span.set_attribute("tessera.status", task.status)
            if task.error:
                span.set_attribute("tessera.error_code", task.error.code)

    async def _run(self, task: Task) -> None:
        attempt = self.ledger.attempt(task)
        request = GenerateRequest(task_id=task.id, tenant=task.tenant, model=task.model,
                                  created_at=task.created_at, params=task.params,
                                  trace_context=inject(), preview=task.preview,
                                  file_prefix=task.file_prefix)
        # By value over the replica's gRPC server rather than as a Ray actor call: Serve's
        # streaming hop took 1.3-1.8 ms instead of 3.5 ms on two cores (what Serve's
        # RAY_SERVE_USE_GRPC_BY_DEFAULT switches on for every handle). Its failures map to the
        # same Ray errors (a lost replica is ActorUnavailableError).
        handle = self.handle.options(multiplexed_model_id=task.source.key, stream=True,
                                     _by_reference=False)
        stream = handle.generate.remote(request)
        started = asyncio.Event()
        consume = asyncio.ensure_future(self._consume(task, stream, started))
        try:
            if not await self._started_in_time(task, consume, started):
                return
            output = await asyncio.wait_for(
                consume, timeout=max(task.deadline_at - time.time(), 0.01))
            if task.attempts != attempt:  # a later attempt owns the task now: ignore this one
                return
            if not task.done:
                if task.status == QUEUED:  # a stream that skipped Started: start it now
                    self.ledger.start(task)
                self.ledger.complete(task, output)
        except asyncio.TimeoutError:
            self.ledger.fail(task, "timeout", "the task did not finish before its deadline")
        except Exception as exc:  # every failure must end the task, never leave it running
            err = unwrap_remote_error(exc)
            if replica_lost(err) and task.attempts < MAX_ATTEMPTS and not task.done:
                logger.warning("replica lost while running %s; requeueing", task.id)
                self.ledger.requeue(task)
            elif isinstance(err, TesseraError):
                self.ledger.fail(task, err.code, err.message)
            else:
                logger.exception("task %s failed", task.id)
                self.ledger.fail(task, "generation_failed", f"{type(err).__name__}: {err}"[:500])
        finally:
            # a stream that did not end by itself (deadline, cold start) is cancelled, so the
            # server drops the task from its batch queue
            if not consume.done() or consume.cancelled():
                consume.cancel()
                stream.cancel()

    async def _consume(self, task: Task, stream, started: asyncio.Event) -> GenerateResult:
        async for event in stream:
            if isinstance(event, Started):
                started.set()
                if task.status == QUEUED:
                    self.ledger.start(task)
            elif isinstance(event, Step):
                self.ledger.progress(task, event.step, event.total_steps, event.preview)
            elif isinstance(event, GenerateResult):
                return event
        raise RuntimeError("the family server ended the task's stream without a result")

    async def _started_in_time(self, task: Task, consume: asyncio.Future,
                               started: asyncio.Event) -> bool:
        """The family's cold-start deadline: from hand-off to the pipeline starting."""
        limit = self.settings.cold_start_deadline_s
        if not limit or limit >= task.deadline_at - time.time():
            return True
        waiter = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait({consume, waiter}, timeout=limit,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if consume.done() or started.is_set() or task.status == IN_PROGRESS:
            return True
        self.ledger.fail(task, "cold_start_timeout",
                         f"no {task.family} replica started the task within {limit:g} s of it "
                         "being handed to the family (scaling up from zero, placing it on a GPU "
                         "node and loading the model must fit in that); retry later")
        return False
