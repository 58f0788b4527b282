"""Webhooks: the task view POSTed to the task's `webhook` URL when it starts (if asked) and
when it ends, signed per Standard Webhooks with the tenant's `whsec_` secret.

A delivery is a database row, committed in the same transaction as the task's start or end that
makes it, so no ended task loses its webhook and deliveries survive restarts. A failed try
(no answer, or not 2xx) waits `backoff_base_s` x 2^(tries-1), up to `max_attempts`; every try
of one delivery carries the same `webhook-id`, so a receiver can drop duplicates. The URL passes
the private-address guard again at each try (a name may resolve elsewhere later).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

from serve_app.core.config import TesseraConfig
from serve_app.core.errors import WebhookURLError
from serve_app.db import tasks as task_rows
from serve_app.db import webhooks as rows
from serve_app.inputs import check_url_allowed
from serve_app.tasks.state import Task
from serve_app.views import render_task

logger = logging.getLogger("tessera.webhooks")

START, COMPLETED = "start", "completed"
MAX_BATCH = 50
MAX_STATES = 10_000


def tenant_secret(signing_key: str, tenant: str) -> str:
    """The tenant's Standard Webhooks secret: whsec_ + base64 of 32 bytes."""
    digest = hmac.new(signing_key.encode(), f"webhooks:{tenant}".encode(), hashlib.sha256)
    return "whsec_" + base64.b64encode(digest.digest()).decode()


class WebhookOutbox:
    def __init__(self, engine, store, config: TesseraConfig, live: dict[str, Task]):
        self.engine = engine
        self.store = store
        self.config = config
        self.settings = config.webhooks
        self.live = live  # the task actor's tasks in memory
        self.states: dict[str, dict[str, Any]] = {}  # task id -> its newest delivery's state
        self._key: str | None = config.webhooks.signing_key
        self._wake = asyncio.Event()
        self._client = None  # one connection pool for every delivery, made on first use
        self.worker = asyncio.create_task(self._run())

    async def secret(self, tenant: str) -> str:
        if self._key is None:
            self._key = await asyncio.to_thread(rows.signing_key, self.engine)
        return tenant_secret(self._key, tenant)

    def deliveries(self, task: Task, event: str) -> list[dict]:
        """The task started or ended: the delivery rows to commit with that change (none if
        it did not ask for this event)."""
        if not (task.webhook and event in task.webhook_events):
            return []
        self._set_state(task.id, rows.PENDING, 0, None)
        return [rows.new(f"msg_{secrets.token_hex(12)}", task.id, task.tenant, task.webhook,
                         event, time.time())]

    def wake(self) -> None:
        self._wake.set()

    async def close_client(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def state(self, task: Task) -> dict[str, Any] | None:
        if not task.webhook:
            return None
        if task.id not in self.states:
            latest = await asyncio.to_thread(rows.latest, self.engine, task.id)
            if latest is None:
                return None
            self._set_state(task.id, latest["status"], latest["attempts"], latest["last_error"])
        return self.states[task.id]

    def _set_state(self, task_id: str, status: str, attempts: int, error: str | None) -> None:
        self.states.pop(task_id, None)
        self.states[task_id] = {"status": status, "attempts": attempts, "last_error": error}
        if len(self.states) > MAX_STATES:  # the oldest are read from the database again
            self.states.pop(next(iter(self.states)))

    async def _run(self) -> None:
        while True:
            try:
                due = await asyncio.to_thread(rows.due, self.engine, time.time(), MAX_BATCH)
                await asyncio.gather(*(self._deliver(d) for d in due))
                upcoming = await asyncio.to_thread(rows.next_due, self.engine)
            except Exception:  # the database is away: try again shortly
                logger.exception("webhook outbox")
                upcoming = None
            wait = 5.0 if upcoming is None else min(5.0, max(0.0, upcoming - time.time()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def _task(self, task_id: str) -> Task | None:
        task = self.live.get(task_id)
        if task is None:
            found = await asyncio.to_thread(task_rows.load, self.engine, task_id)
            task = found[0] if found else None
        return task

    async def _deliver(self, d: dict) -> None:
        import httpx
        from standardwebhooks.webhooks import Webhook

        attempts = d["attempts"] + 1
        error = None
        try:
            task = await self._task(d["task_id"])
            if task is None:
                raise LookupError("the task is gone")
            view = await render_task(task, self.store, task.base_url,
                                     self.config.storage.url_ttl_s, with_b64=False)
            body = view.model_dump_json()
            await asyncio.to_thread(check_url_allowed, d["url"], param="webhook",
                                    allow_private=self.config.inputs.allow_private_urls,
                                    error=WebhookURLError)
            now = datetime.datetime.now(datetime.timezone.utc)
            signature = Webhook(await self.secret(d["tenant"])).sign(d["id"], now, body)
            headers = {"webhook-id": d["id"], "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": signature, "content-type": "application/json",
                       "user-agent": "tessera-webhooks"}
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.settings.timeout_s)
            response = await self._client.post(d["url"], content=body, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"the receiver answered HTTP {response.status_code}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if error is None:
            status, next_at = rows.DELIVERED, None
        elif attempts >= self.settings.max_attempts:
            status, next_at = rows.FAILED, None
        else:
            status = rows.PENDING
            next_at = time.time() + self.settings.backoff_base_s * 2 ** (attempts - 1)
        self._set_state(d["task_id"], status, attempts, error)
        await asyncio.to_thread(rows.record, self.engine, d["id"], status, attempts, next_at,
                                error)
