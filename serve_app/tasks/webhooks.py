"""Webhooks: the task view POSTed to the task's `webhook` URL when it starts (if asked) and
when it ends, signed per Standard Webhooks with the tenant's `whsec_` secret. The body speaks
the dialect the task was asked for in (a native view, a Replicate prediction, fal's webhook).

A delivery is a database row, committed in the same transaction as the task's start or end that
makes it, so no ended task loses its webhook and deliveries survive restarts. A failed try
(no answer, or not 2xx) waits `backoff_base_s` x 2^(tries-1), up to `max_attempts`; every try
of one delivery carries the same `webhook-id`, so a receiver can drop duplicates. The URL passes
the address guard again at each try (a name may resolve elsewhere later) and each try has one
total deadline (`timeout_s`). Tries run each on their own, at most `PER_RECEIVER` at once to
one receiver, so a slow receiver delays only its own deliveries.
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

from serve_app.core import netguard
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import TesseraError, WebhookURLError
from serve_app.core.tasks import Task, WebhookState
from serve_app.db import tasks as task_rows
from serve_app.db import webhooks as rows
from serve_app.db.engine import run
from serve_app.wire.views import webhook_body

logger = logging.getLogger("tessera.webhooks")

START, COMPLETED = "start", "completed"
MAX_BATCH = 200  # deliveries read per scan
MAX_INFLIGHT = 200  # tries in flight at once, every receiver together
PER_RECEIVER = 4  # tries in flight to one receiver (host:port); the rest of its wait
DEFER_S = 1.0  # how far a receiver's deliveries past its share are put off
MAX_STATES = 10_000


def _receiver(url: str) -> str:
    """host:port of a delivery's URL (the guard's own parse), or the URL where it is malformed
    (its try then fails at the guard)."""
    try:
        _, host, port = netguard.parse(url, param="webhook")
    except TesseraError:
        return url
    return f"{host}:{port}"


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
        self.states: dict[str, WebhookState] = {}  # task id -> its newest delivery's state
        self._key: str | None = config.webhooks.signing_key
        self._wake = asyncio.Event()
        self._client = None  # one connection pool for every delivery, made on first use
        self._inflight: dict[str, asyncio.Task] = {}  # delivery id -> its try
        self._per_receiver: dict[str, int] = {}
        self.worker = asyncio.create_task(self._run())

    async def secret(self, tenant: str) -> str:
        if self._key is None:
            self._key = await asyncio.to_thread(run, rows.signing_key, self.engine)
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

    async def close(self) -> None:
        """Stop scanning and trying (what a dead process does; in-process for tests)."""
        pending = [self.worker, *self._inflight.values()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def state(self, task: Task) -> WebhookState | None:
        if not task.webhook:
            return None
        if task.id not in self.states:
            latest = await asyncio.to_thread(run, rows.latest, self.engine, task.id)
            if latest is None:
                return None
            self._set_state(task.id, latest["status"], latest["attempts"], latest["last_error"])
        return self.states[task.id]

    def _set_state(self, task_id: str, status: str, attempts: int, error: str | None) -> None:
        self.states.pop(task_id, None)
        self.states[task_id] = WebhookState(status=status, attempts=attempts, last_error=error)
        if len(self.states) > MAX_STATES:  # the oldest are read from the database again
            self.states.pop(next(iter(self.states)))

    async def _run(self) -> None:
        while True:
            try:
                await self._start_due()
                upcoming = await asyncio.to_thread(run, rows.next_due, self.engine)
            except Exception:  # the database is away: try again shortly
                logger.exception("webhook outbox")
                upcoming = None
            wait = 5.0 if upcoming is None else min(5.0, max(0.0, upcoming - time.time()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def _start_due(self) -> None:
        """Start a try of each due delivery, each on its own: a slow receiver holds up only
        its own deliveries (at most PER_RECEIVER tries to it at once, the rest put off)."""
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return
        now = time.time()
        due = await asyncio.to_thread(run, rows.due, self.engine, now, min(room, MAX_BATCH))
        start, later = [], []
        for d in due:
            if d["id"] in self._inflight:
                continue
            receiver = _receiver(d["url"])
            if self._per_receiver.get(receiver, 0) >= PER_RECEIVER:
                later.append(d["id"])
                continue
            self._per_receiver[receiver] = self._per_receiver.get(receiver, 0) + 1
            start.append((d, receiver))
        # leased for longer than one try can take, so the next scan passes them over
        await asyncio.to_thread(run, rows.claim, self.engine, [d["id"] for d, _ in start],
                                now + self.settings.timeout_s + 5)
        await asyncio.to_thread(run, rows.claim, self.engine, later, now + DEFER_S)
        for d, receiver in start:
            attempt = asyncio.create_task(self._deliver(d))
            self._inflight[d["id"]] = attempt
            attempt.add_done_callback(
                lambda _, i=d["id"], r=receiver: self._tried(i, r))

    def _tried(self, delivery_id: str, receiver: str) -> None:
        self._inflight.pop(delivery_id, None)
        left = self._per_receiver.get(receiver, 1) - 1
        if left > 0:
            self._per_receiver[receiver] = left
        else:
            self._per_receiver.pop(receiver, None)
        self._wake.set()

    async def _task(self, task_id: str) -> Task | None:
        task = self.live.get(task_id)
        if task is None:
            found = await asyncio.to_thread(run, task_rows.load, self.engine, task_id)
            task = found[0] if found else None
        return task

    async def _post(self, url: str, body: str, headers: dict) -> int:
        """The POST to the address the guard checked (the URL passes it again at each try:
        a name may resolve elsewhere later)."""
        target = await netguard.resolve_async(
            url, param="webhook", allow_private=self.config.inputs.allow_private_urls,
            error=WebhookURLError)
        async with netguard.pinned_stream(self._client, "POST", target, headers=headers,
                                          content=body.encode()) as response:
            return response.status_code

    async def _deliver(self, d: dict) -> None:
        import httpx
        from standardwebhooks.webhooks import Webhook

        attempts = d["attempts"] + 1
        error = None
        try:
            task = await self._task(d["task_id"])
            if task is None:
                raise LookupError("the task is gone")
            body = await webhook_body(task, self.store, self.config.storage.url_ttl_s)
            now = datetime.datetime.now(datetime.timezone.utc)
            signature = Webhook(await self.secret(d["tenant"])).sign(d["id"], now, body)
            headers = {"webhook-id": d["id"], "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": signature, "content-type": "application/json",
                       "user-agent": "tessera-webhooks"}
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.settings.timeout_s,
                                                 trust_env=False)
            status = await netguard.within(
                self.settings.timeout_s, self._post(d["url"], body, headers),
                what="the delivery", param="webhook")
            if not 200 <= status < 300:
                error = f"the receiver answered HTTP {status}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if error is None:
            status, next_at = rows.DELIVERED, None
        elif attempts >= self.settings.max_attempts:
            status, next_at = rows.FAILED, None
        else:
            status = rows.PENDING
            next_at = time.time() + self.settings.backoff_base_s * 2 ** (attempts - 1)
        if error is not None:
            logger.info("webhook %s try %d: %s", d["id"], attempts, error)
        await asyncio.to_thread(run, rows.record, self.engine, d["id"], status, attempts, next_at,
                                error)
        self._set_state(d["task_id"], status, attempts, error)  # shown once it is stored
