"""A task as its client sees it: the view every route, stream and webhook renders. The one
place the stored record (`core.tasks`) meets the wire schema (`protocol`).

Output links are signed for `url_ttl_s` against the base URL the client used (the ingress's
request URL, or the one the task was submitted through, for webhooks).
"""

from __future__ import annotations

import base64
import datetime

from serve_app.core.storage import OutputStore
from serve_app.core.tasks import Task
from serve_app.protocol import TaskResult, TaskView, Usage

VIEW_FIELDS = {"id", "status", "model", "family", "created_at", "updated_at", "started_at",
               "completed_at", "queue_position", "progress", "attempts", "history", "request",
               "warnings", "error", "cancel_at", "metadata"}


async def render_task(task: Task, store: OutputStore, base_url: str, url_ttl_s: int,
                      with_b64: bool = True) -> TaskView:
    view = TaskView(**task.model_dump(include=VIEW_FIELDS), webhook=task.webhook_state)
    out = task.result
    if out is not None:
        want_b64 = with_b64 and task.request.response_format == "b64_json"
        data = []
        for image in out.images:
            item = {"seed": image.seed, "content_type": image.content_type,
                    "url": store.url(image.key, base_url, url_ttl_s)}
            if want_b64:
                item["b64_json"] = base64.b64encode(await store.get_async(image.key)).decode()
            data.append(item)
        created = datetime.datetime.fromtimestamp(task.completed_at or task.updated_at,
                                                  datetime.timezone.utc)
        # images bill by output alone: total_tokens is output_tokens on the wire
        usage = Usage(**{**out.usage.model_dump(), "total_tokens": out.usage.output_tokens})
        view.result = TaskResult(created=created.strftime("%Y-%m-%dT%H:%M:%S"), data=data,
                                 usage=usage, width=out.width, height=out.height,
                                 timings_ms=out.timings_ms)
    return view
