"""Batching over HTTP: concurrent compatible tasks share one pipeline call (read from their
traces) and each image has the bytes it has alone."""

from __future__ import annotations

import concurrent.futures
import io
import json
import time

import pytest
from PIL import Image

from deployments.registry import FAMILIES
from tests.support.api import download, import_model, wait_task


@pytest.fixture(scope="module")
def batching(deploy, session_dir):
    traces = session_dir / "traces-batching.jsonl"
    # A long wait makes the batch deterministic here: every task submitted at once joins it.
    service = deploy("batching", {
        "families": {name: {"enabled": name == "flux", "num_replicas": 1,
                            "max_batch_size": 8, "batch_wait_timeout_s": 1.0,
                            "max_ongoing_requests": 8} for name in FAMILIES},
        "tracing": {"exporter": "file", "path": str(traces)}})
    with service.client() as client:
        yield client, traces, import_model(client, "tessera/tiny-flux")


def denoise_spans(traces, task_ids: set[str], timeout: float = 20) -> dict[str, dict]:
    """Each task's pipeline.denoise span (spans reach the file a little after the task ends)."""
    deadline = time.time() + timeout
    while True:
        spans = [json.loads(line) for line in traces.read_text().splitlines()]
        denoise = {s["parent_id"]: s for s in spans if s["name"] == "pipeline.denoise"}
        found = {s["attributes"]["tessera.task_id"]: denoise[s["span_id"]] for s in spans
                 if s["name"] == "tessera.generate" and s["span_id"] in denoise
                 and s["attributes"]["tessera.task_id"] in task_ids}
        if set(found) == task_ids or time.time() > deadline:
            return found
        time.sleep(0.3)


def submitter(client):
    def submit(body: dict) -> str:
        r = client.post("/v1/images/generations", json=body)
        assert r.status_code == 202, r.text
        return r.json()["task_id"]

    return submit


def pngs(task: dict) -> list[bytes]:
    assert task["status"] == "completed", task
    return [download(d["url"]) for d in task["result"]["data"]]


def busy(client, model: str) -> str:
    """A slow task that has started: tasks submitted now gather into the next call."""
    blocker = submitter(client)({"model": model, "prompt": "busy", "size": "512x512",
                                 "num_inference_steps": 48})
    while client.get(f"/v1/tasks/{blocker}").json()["status"] == "queued":
        time.sleep(0.05)
    return blocker


def test_concurrent_requests_share_a_call_and_keep_their_bytes(batching):
    client, traces, model = batching
    submit = submitter(client)
    bodies = [{"model": model, "prompt": "a red fox", "seed": 1, "size": "64x64"},
              {"model": model, "prompt": "a lighthouse at night", "seed": 2, "size": "64x64",
               "n": 2},
              {"model": model, "prompt": "a boat", "seed": 3, "size": "64x64"},
              {"model": model, "prompt": "a boat", "seed": 3, "size": "96x64"}]

    # A task that finds the replica idle starts at once; tasks arriving while it is busy gather
    # into the next call. So keep it busy with a slow task, then submit the four at once.
    blocker = busy(client, model)
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        ids = list(pool.map(submit, bodies))
    assert client.get(f"/v1/tasks/{blocker}").json()["status"] == "in_progress"
    together = [pngs(wait_task(client, i)) for i in ids]
    alone_ids, alone = [], []
    for body in bodies:  # one at a time: each runs in a call of its own
        alone_ids.append(submit(body))
        alone.append(pngs(wait_task(client, alone_ids[-1])))

    assert together == alone  # the same bytes alone or in a batch
    spans = denoise_spans(traces, set(ids) | set(alone_ids))
    compatible = [spans[i]["attributes"] for i in ids[:3]]
    # the three 64x64 tasks (4 images) ran as one call; the 96x64 one could not join them
    assert all(a["tessera.batch_tasks"] == 3 and a["tessera.batch_size"] == 4
               for a in compatible), compatible
    assert spans[ids[3]]["attributes"]["tessera.batch_tasks"] == 1
    assert all(spans[i]["attributes"]["tessera.batch_tasks"] == 1 for i in alone_ids)
    sizes = [Image.open(io.BytesIO(t[0])).size for t in together]
    assert sizes == [(64, 64)] * 3 + [(96, 64)]




def test_tasks_with_the_same_controlnet_share_a_call_and_keep_their_bytes(batching):
    """The same ControlNet at the same settings batches, each image with its own control image;
    another ControlNet, or none, runs in a call of its own."""
    from tests.support.images import BLUE, RED

    client, traces, model = batching
    control = {"path": "tessera/tiny-flux-controlnet", "conditioning_scale": 0.8}
    bodies = [{"model": model, "prompt": "a red fox", "seed": 1, "size": "64x64",
               "controlnets": [{**control, "image": RED}]},
              {"model": model, "prompt": "a boat", "seed": 2, "size": "64x64",
               "controlnets": [{**control, "image": BLUE}]},
              {"model": model, "prompt": "a boat", "seed": 2, "size": "64x64",
               "controlnets": [{**control, "image": RED}]},
              {"model": model, "prompt": "a boat", "seed": 2, "size": "64x64"}]

    submit = submitter(client)

    def png(task_id):
        return pngs(wait_task(client, task_id))[0]

    busy(client, model)
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        ids = list(pool.map(submit, bodies))
    together = [png(i) for i in ids]
    alone_ids, alone = [], []
    for body in bodies[:3]:  # one at a time: each runs in a call of its own
        alone_ids.append(submit(body))
        alone.append(png(alone_ids[-1]))

    assert together[:3] == alone  # the same control image, the same bytes alone or batched
    assert len(set(together)) == 4
    spans = denoise_spans(traces, set(ids) | set(alone_ids))
    assert [spans[i]["attributes"]["tessera.batch_tasks"] for i in ids] == [3, 3, 3, 1]
    assert all(spans[i]["attributes"]["tessera.batch_tasks"] == 1 for i in alone_ids)
