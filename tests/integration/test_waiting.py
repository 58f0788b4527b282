"""Waiting for the answer: `Prefer: wait` on submissions and `?wait=N` on a task's view."""

from __future__ import annotations

import pytest

from serve_app.api.deps import preferred_wait
from tests.support.api import download


@pytest.mark.parametrize("prefer, wait", [
    (None, None), ("", None), ("respond-async", None), ("wait", 60), ("wait=5", 5),
    ("respond-async, wait=10", 10), ("wait=600", 60), ("wait=abc", None), ("Wait=3", 3),
    ("handling=lenient; wait=2", 2)])
def test_prefer_header(prefer, wait):
    assert preferred_wait(prefer) == wait


def test_prefer_wait_answers_with_the_finished_task(client_a, tiny_flux_a):
    r = client_a.post("/v1/images/generations", headers={"Prefer": "wait"},
                      json={"model": tiny_flux_a, "prompt": "a fox", "size": "64x64", "seed": 4})
    assert r.status_code == 200, r.text
    assert r.headers["Preference-Applied"] == "wait=60"
    task = r.json()
    assert task["status"] == "completed" and task["object"] == "task"
    assert download(task["result"]["data"][0]["url"])[:4] == b"\x89PNG"


def test_a_short_wait_answers_202_with_the_task_as_it_is(client_a, tiny_flux_a):
    r = client_a.post("/v1/images/generations", headers={"Prefer": "wait=1"},
                      json={"model": tiny_flux_a, "prompt": "a slow one", "size": "512x512",
                            "num_inference_steps": 48})
    assert r.status_code == 202, r.text
    assert r.headers["Preference-Applied"] == "wait=1"
    task = r.json()
    assert task["status"] in ("queued", "in_progress")
    assert r.headers["Location"].endswith(f"/v1/tasks/{task['id']}")
    # long-poll the Location until the task ends
    for _ in range(10):
        polled = client_a.get(r.headers["Location"], params={"wait": 60})
        assert polled.status_code == 200, polled.text
        if polled.json()["status"] == "completed":
            break
    assert polled.json()["status"] == "completed"


def test_wait_is_bounded(client_a):
    r = client_a.get("/v1/tasks/task_nope", params={"wait": 61})
    assert r.status_code == 400 and r.json()["error"]["param"] == "wait"
