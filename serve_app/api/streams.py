"""A task's Server-Sent Events: `status`, `progress`, `preview`, then `done` with the view.

Each event's id is the task's `event_seq` at that moment (it grows with every transition and
step), so a client that reconnects with `Last-Event-ID` gets only what it has not seen. The
stream follows the task actor's `watch` long-poll and ends once the task has ended.
"""

from __future__ import annotations

import json
from typing import AsyncIterator

from serve_app.api.gateway import Gateway
from serve_app.core.tasks import Task
from serve_app.tasks.ledger import event_seq

WATCH_S = 15.0  # one long-poll; sse-starlette pings in between keep proxies from closing


def last_seen(task: Task, last_event_id: str | None) -> tuple[int, str | None, int]:
    """(event id, status, step) the client saw last, from its Last-Event-ID."""
    text = (last_event_id or "").strip()
    # ASCII digits, and few: "²" is a digit to str.isdigit, and int() refuses thousands
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        return -1, None, 0
    seen = int(text)
    transitions = seen // 1000
    status = (task.history[transitions - 1]["status"]
              if 0 < transitions <= len(task.history) else None)
    return seen, status, seen % 1000


def _event(name: str, seq: int, data: dict) -> dict:
    return {"event": name, "id": str(seq), "data": json.dumps(data, separators=(",", ":"))}


async def task_events(gw: Gateway, task: Task, tenant: str, base_url: str,
                      last_event_id: str | None) -> AsyncIterator[dict]:
    after, status, step = last_seen(task, last_event_id)
    preview = None
    while True:
        seq = event_seq(task)
        if seq > after:
            if task.status != status:
                status = task.status
                yield _event("status", seq, {"status": status,
                                             "queue_position": task.queue_position})
            progress = task.progress
            if progress is not None and (progress.step > step or seq // 1000 != after // 1000):
                step = progress.step
                yield _event("progress", seq, progress.model_dump())
            if task.preview_image and task.preview_image != preview:
                preview = task.preview_image
                yield _event("preview", seq, {"step": step, "image": preview})
            after = seq
        if task.done:
            view = await gw.reads.view(task, base_url)
            yield _event("done", seq, view.model_dump(mode="json"))
            return
        task = await gw.tasks.watch(task.id, tenant, after, WATCH_S)
