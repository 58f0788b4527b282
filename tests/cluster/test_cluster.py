"""A multi-node cluster on 127.0.0.1: a head without GPUs and a worker with a fake GPU.

Run apart from the rest (`make test` runs them in their own pytest process): they start their
own Ray cluster instead of the session's single node.
"""

from __future__ import annotations

import time

import pytest

from cluster.local import actor_nodes

pytestmark = pytest.mark.cluster

def wait(client, task_id, timeout=240):
    end = time.time() + timeout
    while time.time() < end:
        task = client.get(f"/v1/tasks/{task_id}").json()
        if task["status"] in ("completed", "failed"):
            return task
        time.sleep(0.5)
    raise AssertionError(f"{task_id} still {task['status']}")


FLUX = "ServeReplica:tessera:family-flux"


def nodes_of(class_name: str) -> set[str]:
    return set(actor_nodes(class_name))


def test_family_replicas_run_only_on_gpu_nodes(cluster, client, model):
    r = client.post("/v1/images/generations", json={"model": model, "prompt": "p",
                                                    "size": "64x64"})
    assert wait(client, r.json()["task_id"])["status"] == "completed"
    nodes = {name: nodes_of(name) for name in (FLUX, "TaskManager", "ModelRegistry")}
    gpu = {n.node_id for n in cluster.gpu_nodes}
    head = cluster.cluster.head_node.node_id
    assert nodes[FLUX] <= gpu, nodes
    # the ingress may run anywhere; the single writers of state stay on the head
    assert nodes["TaskManager"] == {head} and nodes["ModelRegistry"] == {head}, nodes


def test_rarely_used_family_scales_from_zero_and_back_to_zero(cluster, client):
    sdxl = "ServeReplica:tessera:family-sdxl"
    assert actor_nodes(sdxl) == []  # nothing runs before the first task
    v = client.post("/v1/my-models/validate-hf", json={"hf_model_id": "tessera/tiny-sdxl"})
    model = client.post("/v1/my-models/import-hf",
                        json={"validation_id": v.json()["validation_id"]}).json()["id"]
    started = time.time()
    r = client.post("/v1/images/generations", json={"model": model, "prompt": "p",
                                                    "size": "64x64"})
    task = wait(client, r.json()["task_id"])
    assert task["status"] == "completed", task.get("error")
    cold_s = time.time() - started
    assert set(actor_nodes(sdxl)) <= {n.node_id for n in cluster.gpu_nodes}
    idle = time.time()
    while time.time() - idle < 120 and actor_nodes(sdxl):
        time.sleep(0.5)
    assert actor_nodes(sdxl) == []
    print(f"cold start to completed {cold_s:.1f}s, back to zero {time.time() - idle:.1f}s "
          "after idle")


def test_replicas_scale_up_under_load_and_back_down(cluster, client, model):
    assert len(actor_nodes(FLUX)) == 1
    # enough work to outlast Serve's metric reporting (a few seconds) several times over
    ids = [client.post("/v1/images/generations", json={
        "model": model, "prompt": f"load {i}", "size": "512x512", "num_inference_steps": 50,
    }).json()["task_id"] for i in range(24)]
    started, most = time.time(), []
    while time.time() - started < 120 and len(most) < 2:
        most = actor_nodes(FLUX)
        time.sleep(0.5)
    scaled_up_s = time.time() - started
    assert len(most) == 2, most
    assert set(most) == {n.node_id for n in cluster.gpu_nodes}  # one per GPU node
    assert all(wait(client, t)["status"] == "completed" for t in ids)
    idle, now = time.time(), actor_nodes(FLUX)
    while time.time() - idle < 120 and len(now) > 1:
        now = actor_nodes(FLUX)
        time.sleep(0.5)
    assert len(now) == 1, now
    print(f"scaled up in {scaled_up_s:.1f}s, down {time.time() - idle:.1f}s after idle")


def test_node_loss_then_return_loses_no_task(cluster, client, model):
    ids = [client.post("/v1/images/generations", json={
        "model": model, "prompt": f"p{i}", "size": "256x256", "num_inference_steps": 20,
    }).json()["task_id"] for i in range(4)]
    time.sleep(1.0)  # the first is running on a GPU node now
    for node in list(cluster.gpu_nodes):  # every GPU node goes: the family has nowhere to run
        cluster.remove_gpu_node(node)
    # the API keeps answering while the family has nowhere to run
    assert client.get("/healthz").status_code == 200
    statuses = {client.get(f"/v1/tasks/{t}").json()["status"] for t in ids}
    assert statuses <= {"queued", "in_progress", "completed"}
    time.sleep(3)
    cluster.add_gpu_node()
    tasks = [wait(client, t) for t in ids]
    assert [t["status"] for t in tasks] == ["completed"] * 4, [t.get("error") for t in tasks]
    nodes = nodes_of(FLUX)
    assert nodes <= {n.node_id for n in cluster.gpu_nodes}, nodes
