"""A task as Replicate's clients see it: a prediction. Here beside the native view because both
the Replicate routes and the webhook sender render it (`api/dialects/replicate.py` keeps the
routes and the request schema).

Statuses: queued is `starting`, running `processing`, then `succeeded`, `failed` or `canceled`
(aborted too). A prediction whose every image the safety checker blocked has failed, with
Replicate's own words. Replicate's Python client (1.0.x) treats every status but `starting` as final
when it asked to wait, so a prediction answered after a `Prefer: wait` that ran out says
`starting` however far it got. The logs carry one tqdm-style progress line, which the client
parses into `prediction.progress`.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any, Literal

from pydantic import BaseModel

from serve_app.core.storage import OutputStore
from serve_app.core.tasks import TERMINAL, Task

PredictionStatus = Literal["starting", "processing", "succeeded", "failed", "canceled"]
STATUSES: dict[str, PredictionStatus] = {
    "queued": "starting", "in_progress": "processing", "completed": "succeeded",
    "failed": "failed", "canceled": "canceled", "aborted": "canceled"}
API = "replicate/v1"
NSFW = "NSFW content detected. Try running it again, or try a different prompt."


class Prediction(BaseModel):
    id: str
    model: str
    version: str
    status: PredictionStatus
    input: dict[str, Any]
    output: list[str] | None = None
    logs: str = ""
    error: str | None = None
    metrics: dict[str, float] = {}
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    urls: dict[str, str]
    source: Literal["api"] = "api"
    data_removed: bool = False


def version_id(model: str) -> str:
    """The one version of a model by that name (Replicate's ids are 64 hex digits): the same
    name always has the same version."""
    return hashlib.sha256(f"tessera:{model}".encode()).hexdigest()


def iso(at: float | None) -> str | None:
    if at is None:
        return None
    moment = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def progress_line(step: int, total: int) -> str:
    done = step * 10 // max(total, 1)
    return f"{step * 100 // max(total, 1):3d}%|{'#' * done}{' ' * (10 - done)}| {step}/{total}"


def logs(task: Task) -> str:
    lines = [f"warning: {w}" for w in task.warnings]
    total = task.params.num_inference_steps
    if task.status == "completed":
        lines.append(progress_line(total, total))
    elif task.progress is not None:
        lines.append(progress_line(task.progress.step, task.progress.total_steps))
    return "\n".join(lines) + ("\n" if lines else "")


def model_name(task: Task) -> str:
    """The model as the client named it (a native task's: its model id)."""
    return task.origin.model if task.origin is not None else task.model


async def prediction(task: Task, store: OutputStore, base_url: str, url_ttl_s: int,
                     waited: bool = False) -> Prediction:
    """The task as a prediction; `waited`: the answer to a `Prefer: wait` that ran out."""
    status = STATUSES[task.status]
    if waited and task.status not in TERMINAL:
        status = "starting"
    out = task.result
    output = ([store.url(image.key, base_url, url_ttl_s) for image in out.images]
              if out is not None else None)
    metrics: dict[str, float] = {}
    if out is not None and out.usage.runtime_ms is not None:
        metrics["predict_time"] = round(out.usage.runtime_ms / 1000, 3)
    if task.completed_at is not None:
        metrics["total_time"] = round(task.completed_at - task.created_at, 3)
    error = task.error.message if task.status == "failed" and task.error else None
    if out is not None and out.safety is not None and out.safety.action == "block" and (
            out.safety.flagged == len(out.images)):
        status, output, error = "failed", None, NSFW
    name = model_name(task)
    get = f"{base_url}{API}/predictions/{task.id}"
    inputs = (task.origin.input if task.origin is not None and task.origin.dialect ==
              "replicate" else {"prompt": task.params.prompt})
    return Prediction(
        id=task.id, model=name, version=version_id(name), status=status, input=inputs,
        output=output, logs=logs(task), error=error, metrics=metrics,
        created_at=iso(task.created_at), started_at=iso(task.started_at),
        completed_at=iso(task.completed_at), urls={"get": get, "cancel": f"{get}/cancel"})
