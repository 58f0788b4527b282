"""The task, as the domain knows it: its record, outputs, usage and error, and its state
machine: queued -> in_progress -> completed | failed | canceled; queued -> canceled | aborted
(its deadline passed before it started).

`Task` is what the ingress submits, what the task actor keeps and stores, and what it answers
reads with: one typed record from the 202 to the last poll. Its parameters are kept once
(`params`, what the pipeline runs); every transition is timestamped in `history`; completing a
task bills it (`usage`). Nothing here knows the HTTP schema: the views
(`serve_app/wire/views.py`) map a task to its wire form, so a change to the API never changes
what is stored. The wire reuses the small value types below (`Usage`, `TaskError`,
`TaskProgress`, `WebhookState`, `TaskStatus`) as they are.
"""

from __future__ import annotations

import time
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from serve_app.core.errors import InvalidTransitionError
from serve_app.core.types import (
    GenerateParams,
    GenerateResult,
    ModelSource,
    SafetyReport,
    StoredImage,
)

TaskStatus = Literal["queued", "in_progress", "completed", "failed", "canceled", "aborted"]
STATUSES: tuple[TaskStatus, ...] = get_args(TaskStatus)
QUEUED, IN_PROGRESS, COMPLETED, FAILED, CANCELED, ABORTED = STATUSES
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED, ABORTED})
# in_progress -> queued is the retry after the replica running the task died.
TRANSITIONS = {
    QUEUED: frozenset({IN_PROGRESS, FAILED, CANCELED, ABORTED}),
    IN_PROGRESS: frozenset({COMPLETED, FAILED, QUEUED, CANCELED}),
    **{status: frozenset() for status in TERMINAL},
}
MAX_ATTEMPTS = 3


class Usage(BaseModel):
    """What a completed task is billed: images, and output tokens (16x16-pixel patches, the
    unit hosted image APIs bill output by)."""

    images: int
    output_tokens: int
    total_tokens: int = Field(description="output_tokens: images bill by output alone")
    cost: float
    currency: str = "USD"
    runtime_ms: float | None = None


class TaskError(BaseModel):
    code: str
    message: str


class TaskProgress(BaseModel):
    """Where the running attempt is: the denoising step its pipeline call has finished."""

    step: int
    total_steps: int


class WebhookState(BaseModel):
    """The task's newest webhook delivery, as its outbox last recorded it."""

    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str | None = None


class TaskOutput(BaseModel):
    images: list[StoredImage]
    width: int
    height: int
    usage: Usage
    timings_ms: dict[str, float] = {}
    safety: SafetyReport | None = None


class Origin(BaseModel):
    """How a compatibility dialect's client asked for the task (Replicate's predictions, fal's
    queue): what that dialect's views of it show. A native task has none."""

    dialect: Literal["replicate", "fal"]
    model: str  # the model as the client named it: owner/name, an app id
    input: dict[str, Any] = {}  # the input as the client sent it


class Task(BaseModel):
    id: str
    tenant: str
    model: str
    family: str
    source: ModelSource  # what the family server loads
    params: GenerateParams  # the pipeline parameters, defaults and bounds applied
    created_at: float
    deadline_at: float
    cancel_at: float | None = None  # the client's deadline (cancel_after / Cancel-After)
    preview: bool = False  # stream preview images with the progress
    webhook: str | None = None
    webhook_events: list[str] = []
    idempotency_key: str | None = None
    base_url: str = ""  # what the client called, for the links in its webhooks
    file_prefix: str = ""  # output file names start with it
    metadata: dict[str, str] = {}  # the client's own labels (imagepipeline's batch_id)
    origin: Origin | None = None  # the dialect that asked for it, if not the native API
    price_per_image: float = 0.0
    currency: str = "USD"
    response_format: Literal["url", "b64_json"] = "url"
    warnings: list[str] = []
    status: TaskStatus = QUEUED
    updated_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    attempts: int = 0
    history: list[dict[str, Any]] = []
    result: TaskOutput | None = None
    error: TaskError | None = None
    trace: dict[str, str] = {}  # W3C carrier of the submit request
    queue_position: int | None = None  # filled in when read, not state
    # from the server's Step events: shown, not committed at every step (the next transition
    # clears it)
    progress: TaskProgress | None = None
    preview_image: str | None = None  # the latest preview (a data URI), shown, not committed
    webhook_state: WebhookState | None = None  # filled in when read, not state

    def model_post_init(self, _context: Any) -> None:
        if not self.history:
            self.history.append({"status": QUEUED, "at": self.created_at})
            self.updated_at = self.created_at

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def transition(self, status: TaskStatus, now: float | None = None, **fields) -> None:
        if status not in TRANSITIONS[self.status]:
            raise InvalidTransitionError(f"task {self.id}: {self.status} -> {status}")
        now = time.time() if now is None else now
        self.status = status
        self.updated_at = now
        if status != CANCELED:  # a cancelled task keeps the step it stopped at
            self.progress = None
        self.preview_image = None
        error = fields.get("error")
        self.history.append({"status": status, "at": now,
                             **({"reason": error.code} if error else {})})
        if status == IN_PROGRESS:
            self.started_at = now
        if status in TERMINAL:
            self.completed_at = now
        for name, value in fields.items():
            setattr(self, name, value)

    def complete(self, output: GenerateResult, now: float | None = None) -> None:
        now = time.time() if now is None else now
        n = len(output.images)
        # 16x16-pixel patches, the unit hosted image APIs bill output by
        tokens = (output.width // 16) * (output.height // 16) * n
        usage = Usage(
            images=n, output_tokens=tokens, total_tokens=tokens,
            cost=round(self.price_per_image * n, 6), currency=self.currency,
            runtime_ms=round((now - (self.started_at or now)) * 1000, 2))
        self.transition(COMPLETED, now, result=TaskOutput(
            images=output.images, width=output.width, height=output.height, usage=usage,
            timings_ms=output.timings_ms, safety=output.safety))

    def fail(self, code: str, message: str, now: float | None = None) -> None:
        self.transition(FAILED, now, error=TaskError(code=code, message=message))

    def cancel(self, code: str | None = None, message: str = "", now: float | None = None,
               ) -> None:
        """Canceled (by its client, or at its deadline while running: code deadline_exceeded);
        aborted when its deadline passed before it started."""
        error = TaskError(code=code, message=message) if code else None
        status = ABORTED if code and self.status == QUEUED else CANCELED
        self.transition(status, now, **({"error": error} if error else {}))
