"""A task as a Replicate prediction (`wire.replicate`)."""

from __future__ import annotations

import asyncio

from serve_app.core.storage import LocalDiskStore
from serve_app.core.tasks import Origin, TaskProgress
from serve_app.core.types import GenerateResult, StoredImage
from serve_app.wire.replicate import prediction, version_id
from tests.support.standins import make_task


def view(task, tmp_path, waited=False):
    store = LocalDiskStore(tmp_path / "outputs", tmp_path / "secret", None)
    return asyncio.run(prediction(task, store, "https://h/", 60, waited))


def test_statuses_waits_and_progress(tmp_path):
    task = make_task(origin=Origin(dialect="replicate", model="o/n", input={"prompt": "p"}),
                     num_inference_steps=4)
    queued = view(task, tmp_path)
    assert (queued.status, queued.model, queued.input) == ("starting", "o/n", {"prompt": "p"})
    assert queued.version == version_id("o/n") and len(queued.version) == 64
    assert queued.urls["cancel"] == f"https://h/replicate/v1/predictions/{task.id}/cancel"
    task.transition("in_progress", now=101.0)
    task.progress = TaskProgress(step=2, total_steps=4)
    running = view(task, tmp_path)
    assert running.status == "processing" and "50%|#####     | 2/4" in running.logs
    assert view(task, tmp_path, waited=True).status == "starting"  # the client's contract
    image = StoredImage(key="a/2026/01/01/t1/0.png", seed=1, bytes=1, content_type="image/png")
    task.complete(GenerateResult(images=[image], width=64, height=64), now=103.0)
    done = view(task, tmp_path, waited=True)
    assert done.status == "succeeded" and done.output[0].startswith("https://h/v1/files/")
    assert done.metrics == {"predict_time": 2.0, "total_time": 3.0}
    assert done.created_at == "1970-01-01T00:01:40.000000Z"


def test_a_native_task_as_a_prediction(tmp_path):
    task = make_task()
    task.fail("lora_invalid", "bad adapter")
    failed = view(task, tmp_path)
    assert (failed.status, failed.error, failed.model) == ("failed", "bad adapter", "m")
    canceled = make_task()
    canceled.cancel()
    assert view(canceled, tmp_path).status == "canceled"


def test_a_prediction_whose_every_image_was_blocked_fails_in_replicates_words(tmp_path):
    from serve_app.core.types import SafetyReport

    def ended(flagged: list[bool], action: str):
        task = make_task(seeds=list(range(len(flagged))))
        task.transition("in_progress", now=101.0)
        images = [StoredImage(key=f"a/2026/01/01/t1/{i}.png", seed=i, bytes=1,
                              content_type="image/png", nsfw=f) for i, f in enumerate(flagged)]
        task.complete(GenerateResult(images=images, width=64, height=64, safety=SafetyReport(
            checker="c", action=action, flagged=sum(flagged))), now=102.0)
        return view(task, tmp_path)

    blocked = ended([True, True], "block")
    assert (blocked.status, blocked.output) == ("failed", None)
    assert blocked.error == ("NSFW content detected. Try running it again, or try a different "
                             "prompt.")
    assert ended([True, False], "block").status == "succeeded"  # one of them is fine
    assert ended([True, True], "blur").status == "succeeded"  # blurred: still an output
