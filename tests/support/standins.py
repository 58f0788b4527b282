"""Stand-ins for the task actor's tests: a family handle that streams like Serve's, tasks, and
waiting for a task to end. Only the network hop to a family server is replaced."""

from __future__ import annotations

import asyncio
import time

from serve_app.core.config import load_config
from serve_app.core.errors import ServiceUnavailableError
from serve_app.core.tasks import Task
from serve_app.core.types import GenerateParams, GenerateResult, ModelSource, Started, StoredImage


class Stream:
    """Stands in for Serve's streaming response: `Started`, then the behaviour's result."""

    def __init__(self, coro):
        self._task = asyncio.ensure_future(coro)
        self.cancelled = False

    def __aiter__(self):
        return self._events()

    async def _events(self):
        yield Started()
        out = await self._task
        yield GenerateResult(images=[StoredImage(bytes=0, content_type="image/png", **im)
                                     for im in out["images"]],
                             width=out["width"], height=out["height"])

    def cancel(self):
        self.cancelled = True
        self._task.cancel()


class Handle:
    """Answers generate() by streaming what `behaviour(request as a dict, attempt)` returns."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.calls: list[dict] = []
        self.responses: list[Stream] = []

    def options(self, **_):
        return self

    @property
    def generate(self):
        return self

    def remote(self, request):
        self.calls.append(request.model_dump())
        r = Stream(self.behaviour(self.calls[-1], len(self.calls)))
        self.responses.append(r)
        return r


def config(tmp_path, max_queued_per_tenant=10, database_url=None, max_queued=3,
           keep_finished_s=300.0, read_wait_s=5.0, **storage):
    return load_config({
        "data_dir": str(tmp_path),
        "families": {"flux": {"max_queued": max_queued, "dispatch_concurrency": 1,
                              "num_replicas": 1}},
        "limits": {"max_queued_per_tenant": max_queued_per_tenant,
                   "keep_finished_s": keep_finished_s},
        "database": {"url": database_url, "read_wait_s": read_wait_s},
        "storage": storage}, environ={}).model_dump()


PARAM_FIELDS = set(GenerateParams.model_fields)


def make_task(**fields) -> Task:
    """A task of the tiny FLUX, created at 100 with its deadline at 200; any field of the task
    or of its parameters can be given."""
    params = {"prompt": "p", "width": 64, "height": 64, "num_inference_steps": 4,
              "guidance_scale": None, "seeds": [1],
              **{k: fields.pop(k) for k in list(fields) if k in PARAM_FIELDS}}
    return Task(**{"id": "t1", "tenant": "a", "model": "m", "family": "flux",
                   "source": ModelSource(base="tessera/tiny-flux"),
                   "params": GenerateParams(**params), "created_at": 100.0,
                   "deadline_at": 200.0, **fields})


def task(i, tenant="a", deadline=30.0):
    """Task number i, created now."""
    now = time.time()
    return make_task(id=f"t{i}", tenant=tenant, num_inference_steps=2, created_at=now,
                     deadline_at=now + deadline, price_per_image=0.1)


async def ok(params, attempt):
    await asyncio.sleep(0.01)
    return {"images": [{"key": "k", "seed": 1}], "width": 64, "height": 64}


async def until_done(tm, task_id, tenant="a", timeout=5.0):
    """Poll until the task ends, retrying on 503 as a client would."""
    end, view = time.time() + timeout, None
    while time.time() < end:
        try:
            view = (await tm.get(task_id, tenant)).model_dump()
        except ServiceUnavailableError:
            await asyncio.sleep(0.1)
            continue
        if view["status"] in ("completed", "failed", "canceled", "aborted"):
            return view
        await asyncio.sleep(0.01)
    raise AssertionError(view)


async def until_webhook(tm, task_id, ready, tenant="a", timeout=20.0):
    """Poll the task's webhook state until `ready(state)` holds; the deadline is generous
    because a loaded machine may take seconds to run a try, not because a try should."""
    end, state = time.time() + timeout, None
    while time.time() < end:
        state = (await tm.get(task_id, tenant)).webhook_state
        if state is not None and ready(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(state)


