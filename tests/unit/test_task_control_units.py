"""The pieces of task control that need no server: deadlines, event ids, webhook secrets,
state transitions."""

from __future__ import annotations

import pytest

from serve_app.api.streams import last_seen
from serve_app.core.tasks import Task
from serve_app.core.types import GenerateParams
from serve_app.rules import parse_duration
from serve_app.tasks.ledger import event_seq
from serve_app.tasks.webhooks import tenant_secret


@pytest.mark.parametrize("value, seconds", [
    (90, 90.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1.5h", 5400.0),
    ("500ms", 0.5), (" 2 s ", 2.0)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "", "5d", "-1", 0, -3, "0s", True, 86401, "25h"])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def task(**fields) -> Task:
    params = GenerateParams(prompt="x", width=64, height=64, num_inference_steps=4,
                            guidance_scale=None, seeds=[1])
    return Task(id="task_1", tenant="t", model="m", family="flux", source="s", params=params,
                created_at=100.0, deadline_at=200.0, **fields)


def test_cancel_states():
    queued = task()
    queued.cancel("deadline_exceeded", "late")
    assert queued.status == "aborted" and queued.error.code == "deadline_exceeded"
    running = task()
    running.transition("in_progress")
    running.progress = {"step": 2, "total_steps": 4}
    running.cancel()
    assert running.status == "canceled" and running.error is None
    assert running.progress == {"step": 2, "total_steps": 4}  # where it stopped
    assert running.done and running.history[-1]["status"] == "canceled"


def test_event_ids_grow_and_resume():
    t = task()
    first = event_seq(t)
    t.transition("in_progress")
    started = event_seq(t)
    t.progress = {"step": 3, "total_steps": 4}
    stepped = event_seq(t)
    assert first < started < stepped
    assert last_seen(t, str(stepped)) == (stepped, "in_progress", 3)
    assert last_seen(t, str(first)) == (first, "queued", 0)
    assert last_seen(t, None) == (-1, None, 0)
    assert last_seen(t, "garbage") == (-1, None, 0)


def test_tenant_secrets_are_per_tenant_and_stable():
    a = tenant_secret("key", "tenant-a")
    assert a.startswith("whsec_") and a == tenant_secret("key", "tenant-a")
    assert a != tenant_secret("key", "tenant-b") != tenant_secret("other", "tenant-a")
    from standardwebhooks.webhooks import Webhook

    Webhook(a)  # the library accepts it as a secret
