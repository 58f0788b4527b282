"""A running task shows which denoising step its pipeline call has finished."""

from __future__ import annotations

import time


def test_progress_while_running(client_a, tiny_flux_a):
    r = client_a.post("/v1/images/generations", json={
        "model": tiny_flux_a, "prompt": "a slow one", "size": "512x512",
        "num_inference_steps": 48})
    assert r.status_code == 202, r.text
    task_id, seen = r.json()["task_id"], []
    deadline = time.time() + 120
    while time.time() < deadline:
        task = client_a.get(f"/v1/tasks/{task_id}").json()
        if task["status"] == "in_progress" and task["progress"]:
            seen.append((task["progress"]["step"], task["progress"]["total_steps"]))
        if task["status"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    assert task["status"] == "completed" and task["progress"] is None
    assert seen and all(t == 48 and 1 <= s <= 48 for s, t in seen), seen
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)  # it only moves forward
