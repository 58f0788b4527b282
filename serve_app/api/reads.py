"""Reading tasks: a task's view (with signed links), waiting for its end, the synchronous
dialects' wait for completion, and the links its images will have."""

from __future__ import annotations

import time

from serve_app.api.clients import TaskClient
from serve_app.api.holds import WAITS, TenantHolds
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import GatewayTimeoutError, TaskFailedError
from serve_app.core.keys import output_key
from serve_app.core.storage import OutputStore
from serve_app.core.tasks import TERMINAL, Task
from serve_app.wire.schema import TaskView
from serve_app.wire.views import render_task

# the longest a client may ask to wait for a task's end (`Prefer: wait=N`, `?wait=N`)
MAX_WAIT_S = 60


class TaskReader:
    def __init__(self, config: TesseraConfig, store: OutputStore, tasks: TaskClient,
                 holds: TenantHolds):
        self.config = config
        self.store = store
        self.tasks = tasks
        self.holds = holds

    async def read(self, task_id: str, tenant: str, base_url: str,
                   wait_s: float = 0) -> TaskView:
        """The task view; with wait_s, once the task has ended or after wait_s seconds."""
        if wait_s:
            task = await self.wait(task_id, tenant, wait_s)
        else:
            task = await self.tasks.get(task_id, tenant)
        return await self.view(task, base_url)

    async def wait(self, task_id: str, tenant: str, wait_s: float) -> Task:
        """The task once it has ended, or as it is after wait_s seconds (a held request)."""
        async with self.holds.holding(tenant, WAITS):
            return await self.tasks.wait(task_id, tenant, wait_s)

    async def view(self, task: Task, base_url: str, with_b64: bool = True) -> TaskView:
        return await render_task(task, self.store, base_url, self.config.storage.url_ttl_s,
                                 with_b64)

    @property
    def sync_wait_s(self) -> int:
        """The first wait of a synchronous dialect's submit (`finished` waits on for the rest
        of `compat.sync_wait_s`)."""
        return max(1, min(MAX_WAIT_S, int(self.config.compat.sync_wait_s)))

    async def finished(self, task: Task, started: float, tenant: str,
                       base_url: str) -> TaskView:
        """The view of the task once it has completed (`ended`)."""
        return await self.view(await self.ended(task, started, tenant), base_url)

    async def ended(self, task: Task, started: float, tenant: str) -> Task:
        """The task once it has completed (the synchronous dialects), however long that takes
        within `compat.sync_wait_s` of its submission (`started`, monotonic); 504 after that,
        and the task's own error if it ended without images."""
        deadline = started + self.config.compat.sync_wait_s
        while task.status not in TERMINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GatewayTimeoutError(
                    f"task {task.id} did not finish within {self.config.compat.sync_wait_s:g} "
                    f"s; it goes on: GET /v1/tasks/{task.id}", param=None)
            task = await self.wait(task.id, tenant, max(1, min(MAX_WAIT_S, int(left))))
        if task.status != "completed":
            error = task.error
            raise TaskFailedError(error.message if error else f"the task was {task.status}",
                                  code=error.code if error else task.status)
        return task

    def future_urls(self, task: Task, file_prefix: str, base_url: str) -> list[str]:
        """The links a task's images will have once it completes (the store signs a key
        before its object exists)."""
        return [self.store.url(output_key(task.tenant, task.id, task.created_at, i,
                                          task.params.output_format, file_prefix),
                               base_url, self.config.storage.url_ttl_s)
                for i in range(len(task.params.seeds))]
