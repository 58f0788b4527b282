"""A task as fal's clients see it: a queue request's status, its result, and the webhook fal
sends when it ends. Here beside the native view because both the fal routes and the webhook
sender render it (`api/dialects/fal.py` keeps the routes and the request schema).

A request is `IN_QUEUE` (with its place), `IN_PROGRESS`, then `COMPLETED`, whatever the
outcome: a failed or cancelled request's status says so in `error`, and its result answers the
error. `logs` is always there (fal's client reads it unconditionally), a list when asked for.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from serve_app.core.storage import OutputStore
from serve_app.core.tasks import TERMINAL, Task

QUEUE = "fal/queue"


def request_urls(base_url: str, app_id: str, request_id: str) -> dict[str, str]:
    """Where a queued request is followed: under its app's owner and alias (fal's clients build
    the same from an app id and a request id, without the app's sub-path)."""
    owner, alias = app_id.split("/")[:2]
    base = f"{base_url}{QUEUE}/{owner}/{alias}/requests/{request_id}"
    return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}


def app_id(task: Task) -> str:
    """The app as the client named it (a native task's: its model id)."""
    return task.origin.model if task.origin is not None else task.model


def task_error(task: Task) -> str | None:
    if task.status == "completed":
        return None
    if task.error is not None:
        return task.error.message
    return f"the request was {task.status}"


def log_lines(task: Task) -> list[dict[str, Any]]:
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(task.updated_at))
    lines = [f"warning: {w}" for w in task.warnings]
    if task.progress is not None:
        lines.append(f"step {task.progress.step}/{task.progress.total_steps}")
    elif task.status == "completed":
        steps = task.params.num_inference_steps
        lines.append(f"step {steps}/{steps}")
    return [{"message": line, "level": "INFO", "source": "user", "timestamp": at}
            for line in lines]


def status(task: Task, base_url: str, with_logs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"request_id": task.id,
                            **request_urls(base_url, app_id(task), task.id),
                            "logs": log_lines(task) if with_logs else None}
    if task.status == "queued":
        return {"status": "IN_QUEUE", "queue_position": task.queue_position or 0, **body}
    if task.status not in TERMINAL:
        return {"status": "IN_PROGRESS", **body}
    runtime = task.result.usage.runtime_ms if task.result is not None else None
    error_type = None if task.status == "completed" else (
        task.error.code if task.error else task.status)
    return {"status": "COMPLETED", **body, "error": task_error(task), "error_type": error_type,
            "metrics": {"inference_time": round(runtime / 1000, 3)} if runtime else {}}


async def result(task: Task, store: OutputStore, base_url: str, url_ttl_s: int) -> dict:
    """A completed request's result; `sync_mode` in its input: images as data URIs."""
    out = task.result
    inline = bool(task.origin is not None and task.origin.input.get("sync_mode"))
    images = []
    for image in out.images:
        if inline:
            data = base64.b64encode(await store.get_async(image.key)).decode()
            url = f"data:{image.content_type};base64,{data}"
        else:
            url = store.url(image.key, base_url, url_ttl_s)
        images.append({"url": url, "content_type": image.content_type, "width": out.width,
                       "height": out.height})
    runtime = out.usage.runtime_ms
    return {"images": images, "seed": out.images[0].seed if out.images else None,
            # null: no safety checker looked at the image (none is configured), not "safe"
            "has_nsfw_concepts": [image.nsfw for image in out.images],
            "prompt": task.params.prompt,
            "timings": {"inference": round(runtime / 1000, 3) if runtime else None}}


async def webhook_body(task: Task, store: OutputStore, base_url: str, url_ttl_s: int) -> dict:
    """What fal POSTs to a request's `fal_webhook` when it ends."""
    ok = task.status == "completed"
    return {"request_id": task.id, "gateway_request_id": task.id,
            "status": "OK" if ok else "ERROR",
            "payload": await result(task, store, base_url, url_ttl_s) if ok else None,
            "error": task_error(task)}
