"""A task as a fal queue request (`wire.fal`)."""

from __future__ import annotations

import asyncio

from serve_app.core.storage import LocalDiskStore
from serve_app.core.tasks import Origin, TaskProgress
from serve_app.core.types import GenerateResult, StoredImage
from serve_app.wire import fal
from tests.support.standins import make_task


def test_status_follows_the_task_and_logs_are_always_there():
    task = make_task(origin=Origin(dialect="fal", model="fal-ai/flux/schnell"))
    queued = fal.status(task, "https://h/", with_logs=False)
    assert queued["status"] == "IN_QUEUE" and queued["queue_position"] == 0
    assert queued["status_url"] == f"https://h/fal/queue/fal-ai/flux/requests/{task.id}/status"
    assert queued["logs"] is None
    task.transition("in_progress")
    task.progress = TaskProgress(step=1, total_steps=4)
    running = fal.status(task, "https://h/", with_logs=True)
    assert running["status"] == "IN_PROGRESS" and running["logs"][0]["message"] == "step 1/4"
    task.cancel()
    ended = fal.status(task, "https://h/", with_logs=False)
    assert ended["status"] == "COMPLETED" and ended["error"] == "the request was canceled"
    assert ended["error_type"] == "canceled"


def test_results_and_webhooks(tmp_path):
    store = LocalDiskStore(tmp_path / "outputs", tmp_path / "secret", None)
    key = "a/2026/01/01/t1/0.jpg"
    asyncio.run(store.put_async(key, b"jpeg bytes", "image/jpeg"))
    task = make_task(origin=Origin(dialect="fal", model="o/n", input={"sync_mode": True}))
    task.transition("in_progress", now=101.0)
    task.complete(GenerateResult(images=[StoredImage(key=key, seed=7, bytes=10,
                                                     content_type="image/jpeg")],
                                 width=64, height=48), now=102.5)
    out = asyncio.run(fal.result(task, store, "https://h/", 60))
    assert out["images"] == [{"url": "data:image/jpeg;base64,anBlZyBieXRlcw==",
                              "content_type": "image/jpeg", "width": 64, "height": 48}]
    assert out["seed"] == 7 and out["timings"] == {"inference": 1.5}
    body = asyncio.run(fal.webhook_body(task, store, "https://h/", 60))
    assert body["status"] == "OK" and body["payload"] == out and body["error"] is None
    failed = make_task()
    failed.fail("generation_failed", "boom")
    body = asyncio.run(fal.webhook_body(failed, store, "https://h/", 60))
    assert (body["status"], body["payload"], body["error"]) == ("ERROR", None, "boom")
