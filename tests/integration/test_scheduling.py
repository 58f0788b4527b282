"""Scheduling as clients see it: round-robin fairness, queue positions and backpressure."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from tests.support.api import KEY_B, import_model, wait_task


def test_one_tenants_burst_does_not_starve_another(client_a, client_b, service):
    model_a = import_model(client_a, "tessera/tiny-flux")
    model_b = import_model(client_b, "tessera/tiny-flux")
    body = {"prompt": "p", "size": "64x64", "num_inference_steps": 1}

    def submit_a(i):
        with service.client() as c:
            r = c.post("/v1/images/generations", json={"model": model_a, "seed": i, **body})
            assert r.status_code == 202, r.text
            return r.json()["task_id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        burst = list(pool.map(submit_a, range(200)))
    r = client_b.post("/v1/images/generations", json={"model": model_b, **body})
    assert r.status_code == 202
    lone = r.json()
    # round-robin: B is next in line however long A's queue is
    assert lone["queue_position"] is not None and lone["queue_position"] <= 1
    started_b = wait_task(client_b, lone["task_id"], timeout=300)["started_at"]
    a_tasks = [wait_task(client_a, t, timeout=600) for t in burst]
    assert all(t["status"] == "completed" for t in a_tasks)
    queued_a = [t for t in a_tasks if t["started_at"] > lone["created_at"]]
    assert len(queued_a) > 50  # A still had a long queue when B arrived
    overtook = sum(1 for t in queued_a if t["started_at"] < started_b)
    # B starts in the next batch: before it only the batch already handed to the replica
    # (one replica x 4 in flight) and the rest of B's own batch (3) can start
    assert overtook <= 7, overtook


@pytest.fixture(scope="module")
def slow_flux(deploy):
    """One task at a time on a slow tiny FLUX, so submitted tasks stay queued for seconds."""
    from deployments.registry import FAMILIES

    service = deploy("caps", {
        "limits": {"max_queued_per_tenant": 2},
        "families": {name: {"enabled": name == "flux", "num_replicas": 1, "max_queued": 3,
                            "dispatch_concurrency": 1, "max_batch_size": 1}
                     for name in FAMILIES}})
    with service.client() as a, service.client(KEY_B) as b:
        yield a, b, import_model(a, "tessera/tiny-flux"), import_model(b, "tessera/tiny-flux")


def submit_until_refused(client, model: str, most: int = 8):
    """Submit slow tasks until one is refused: (accepted task ids, the refusal)."""
    body = {"model": model, "prompt": "p", "size": "512x512", "num_inference_steps": 40}
    accepted = []
    for _ in range(most):
        t0 = time.monotonic()
        r = client.post("/v1/images/generations", json=body)
        assert time.monotonic() - t0 < 5  # answered at once, never a hung request
        if r.status_code != 202:
            return accepted, r
        accepted.append(r.json()["task_id"])
    raise AssertionError(f"{most} tasks accepted, none refused")


def test_caps_answer_429_at_once_and_create_no_task(slow_flux):
    a, b, model_a, model_b = slow_flux
    accepted_a, refused = submit_until_refused(a, model_a)
    # A's cap counts queued tasks: two queued (plus at most one already running)
    assert 2 <= len(accepted_a) <= 3
    assert refused.status_code == 429 and refused.headers["Retry-After"].isdigit()
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "queued" in error["message"]

    # The family queue holds 3: A's two and one of B's; B's next is refused though B itself
    # is under its own cap.
    accepted_b, refused = submit_until_refused(b, model_b)
    assert len(accepted_b) <= 2
    assert refused.status_code == 429 and refused.headers["Retry-After"].isdigit()
    assert refused.json()["error"]["code"] == "queue_full"

    # no task was created for a refusal: each tenant sees exactly the tasks it was given ids for
    for client, accepted in ((a, accepted_a), (b, accepted_b)):
        listed = client.get("/v1/tasks", params={"limit": 100}).json()["data"]
        assert sorted(t["id"] for t in listed) == sorted(accepted)


def test_cold_start_deadline_fails_a_task_no_replica_could_start(deploy):
    """A scale-to-zero family whose replica can never be placed (it asks for a GPU that this
    cluster does not have): its task fails with cold_start_timeout, not at the task deadline."""
    from ray import serve

    from deployments.registry import FAMILIES

    service = deploy("cold", {
        "limits": {"task_deadline_s": 120},
        "families": {name: {"enabled": name == "flux", "num_gpus": 1,
                            "cold_start_deadline_s": 3,
                            "autoscaling": {"min_replicas": 0, "max_replicas": 1}}
                     for name in FAMILIES}})
    try:
        with service.client() as client:
            model = import_model(client, "tessera/tiny-flux")
            r = client.post("/v1/images/generations", json={"model": model, "prompt": "p"})
            assert r.status_code == 202
            task = wait_task(client, r.json()["task_id"], timeout=60)
        assert task["status"] == "failed"
        assert task["error"]["code"] == "cold_start_timeout", task["error"]
        assert "flux" in task["error"]["message"] and "3 s" in task["error"]["message"]
        assert 3 <= task["completed_at"] - task["created_at"] < 30
    finally:
        serve.delete("cold")
