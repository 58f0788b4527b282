"""The task state machine."""

from __future__ import annotations

import pytest

from serve_app.core.errors import InvalidTransitionError
from serve_app.core.tasks import Task, TaskProgress
from serve_app.core.types import GenerateResult, StoredImage
from tests.support import standins

# ---------------------------------------------------------------- task state machine


def make_task(**fields) -> Task:
    return standins.make_task(seeds=[1, 2], height=32, price_per_image=0.5, **fields)


def test_task_lifecycle_is_timestamped():
    t = make_task()
    t.transition("in_progress", now=101.0)
    image = StoredImage(key="k", seed=1, bytes=3, content_type="image/png")
    t.complete(GenerateResult(images=[image] * 2, width=64, height=32), now=103.0)
    assert t.status == "completed" and t.started_at == 101.0 and t.completed_at == 103.0
    assert [(h["status"], h["at"]) for h in t.history] == [
        ("queued", 100.0), ("in_progress", 101.0), ("completed", 103.0)]
    assert t.result.usage.model_dump() == {"images": 2, "output_tokens": 2 * 4 * 2,
                                           "total_tokens": 2 * 4 * 2, "cost": 1.0,
                                           "currency": "USD", "runtime_ms": 2000.0}


@pytest.mark.parametrize("path", [
    ["completed"], ["in_progress", "completed", "failed"], ["failed", "in_progress"],
])
def test_invalid_transitions_are_refused(path):
    t = make_task()
    with pytest.raises(InvalidTransitionError):
        for status in path:
            t.transition(status)


def test_failure_records_code():
    t = make_task()
    t.fail("timeout", "too slow", now=150.0)
    assert t.error.model_dump() == {"code": "timeout", "message": "too slow"}
    assert t.history[-1] == {"status": "failed", "at": 150.0, "reason": "timeout"}


def test_cancel_states():
    queued = make_task()
    queued.cancel("deadline_exceeded", "late")
    assert queued.status == "aborted" and queued.error.code == "deadline_exceeded"
    running = make_task()
    running.transition("in_progress")
    running.progress = TaskProgress(step=2, total_steps=4)
    running.cancel()
    assert running.status == "canceled" and running.error is None
    assert running.progress == TaskProgress(step=2, total_steps=4)  # where it stopped
    assert running.done and running.history[-1]["status"] == "canceled"
