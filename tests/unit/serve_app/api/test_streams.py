"""A task's events stream: ids that grow with every change, and where a reconnect resumes."""

from __future__ import annotations

from serve_app.api.streams import last_seen
from serve_app.core.tasks import TaskProgress
from serve_app.tasks.ledger import event_seq
from tests.support.standins import make_task


def test_event_ids_grow_and_resume():
    t = make_task()
    first = event_seq(t)
    t.transition("in_progress")
    started = event_seq(t)
    t.progress = TaskProgress(step=3, total_steps=4)
    stepped = event_seq(t)
    assert first < started < stepped
    assert last_seen(t, str(stepped)) == (stepped, "in_progress", 3)
    assert last_seen(t, str(first)) == (first, "queued", 0)
    assert last_seen(t, None) == (-1, None, 0)
    assert last_seen(t, "garbage") == (-1, None, 0)
