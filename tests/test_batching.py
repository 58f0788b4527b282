"""Batching: compatible tasks share a pipeline call, and an image is the same bytes either way.

The first tests run each family's tiny pipeline in-process through the replica's own grouping
and call code (`batch_groups`, `call_kwargs`, `_run_pipeline`); the last goes through HTTP and
reads the trace to see that the tasks really shared a call.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import time

import pytest
from PIL import Image

from deployments.base import Job
from deployments.registry import FAMILIES
from tests.conftest import import_model, wait_task
from tests.support.batch_check import load, params, run_check, runner, supported_capabilities
from tests.test_api import download
from tests.test_families import NEEDS_TORCHVISION, family_param

TEXT_TO_IMAGE = sorted(n for n, s in FAMILIES.items() if "text-to-image" in s.pipelines)
RUNNABLE = [n for n in TEXT_TO_IMAGE if n not in NEEDS_TORCHVISION]


CAPABILITIES = supported_capabilities()


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """Alone-against-batched results per CPU kernel capability, each run once when first asked
    for (one subprocess per capability: PyTorch fixes its kernels per process)."""
    tiny_dir = tmp_path_factory.mktemp("tiny-inproc")
    done: dict[str, dict] = {}

    def get(capability: str) -> dict:
        if capability not in done:
            done[capability] = run_check(capability, tiny_dir, RUNNABLE,
                                         tiny_dir / f"{capability}.json")
            assert done[capability]["capability"] == capability.upper(), done[capability]
        return done[capability]

    return get


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_position_sensitive_functions_are_invariant(capability, checks):
    """silu, gelu, sigmoid, softmax, norms, ... on every sample alone and at every position of
    a batch give the same bits once the pipeline runs batch-invariant."""
    ops = checks(capability)["ops"]
    assert ops["invariant"] == {}, ops


@pytest.mark.parametrize("capability", CAPABILITIES)
@pytest.mark.parametrize("family", [family_param(n) for n in TEXT_TO_IMAGE])
def test_same_bytes_alone_or_in_a_batch(family, capability, checks):
    spec = FAMILIES[family]
    result = checks(capability)["families"][family]
    if not (spec.single_prompt or spec.batch_by_prompt):
        assert result["groups"] == 1  # different prompts and seeds share one call
    else:
        assert result["groups"] == 3  # only the two tasks with one prompt share a call
    assert result["mismatched"] == [], result  # each task alone == in the batch, both orders
    # one generator per image: different seeds in one task are different images
    assert result["distinct_seeds_differ"], result


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_image_to_image_batches_per_input(capability, checks):
    result = checks(capability)["families"]["flux:image-to-image"]
    assert result["groups"] == 1 and result["mismatched"] == [], result
    assert result["inputs_kept"]  # each task kept its own input image


def test_incompatible_tasks_never_share_a_call():
    r = runner(FAMILIES["flux"], max_batch_images=4)
    base = dict(prompt="p", seeds=[1])
    jobs = [Job(params(0, **base), None), Job(params(1, **base, width=128), None),
            Job(params(2, **base, num_inference_steps=3), None),
            Job(params(3, **base, guidance_scale=5.0), None),
            Job(params(4, **base, task="image-to-image", strength=0.5, image_keys=["k"]), None),
            Job(params(5, **base), None)]
    groups = [[j.params.task_id for j in g] for g in r.batch_groups(jobs)]
    assert sorted(groups) == [["t0", "t5"], ["t1"], ["t2"], ["t3"], ["t4"]]
    # a group holds at most max_batch_size images; a bigger task runs alone
    jobs = [Job(params(i, prompt="p", seeds=list(range(n))), None)
            for i, n in enumerate((3, 2, 6, 1))]
    groups = [[j.params.task_id for j in g] for g in r.batch_groups(jobs)]
    assert groups == [["t0"], ["t1"], ["t2"], ["t3"]] or groups == [["t0", "t3"], ["t1"], ["t2"]]


def test_edits_with_their_own_image_do_not_merge():
    r = runner(FAMILIES["flux-kontext"])
    jobs = [Job(params(i, "make it blue", [1], task="edit", image_keys=[f"k{i}"]), None)
            for i in range(3)]
    assert len(r.batch_groups(jobs)) == 3


@pytest.mark.gpu
def test_same_bytes_alone_or_in_a_batch_on_cuda(tmp_path):
    """The same check on a GPU in bfloat16, where cuBLAS also picks kernels by shape."""
    import torch

    from tests.support.batch_check import compare

    spec = FAMILIES["flux"]
    r = runner(spec)
    r.device = "cuda"
    pipe = load(spec, str(tmp_path), device="cuda", dtype=torch.bfloat16)
    tasks = [params(i, prompt, [i + 1]) for i, prompt in enumerate(("a fox", "a boat", "x"))]
    result = compare(r, pipe, [Job(p, None) for p in tasks])
    assert result["groups"] == 1 and result["mismatched"] == [], result


# ---------------------------------------------------------------- over HTTP


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


def test_concurrent_requests_share_a_call_and_keep_their_bytes(batching):
    client, traces, model = batching
    bodies = [{"model": model, "prompt": "a red fox", "seed": 1, "size": "64x64"},
              {"model": model, "prompt": "a lighthouse at night", "seed": 2, "size": "64x64",
               "n": 2},
              {"model": model, "prompt": "a boat", "seed": 3, "size": "64x64"},
              {"model": model, "prompt": "a boat", "seed": 3, "size": "96x64"}]

    def submit(body):
        r = client.post("/v1/images/generations", json=body)
        assert r.status_code == 202, r.text
        return r.json()["task_id"]

    def pngs(task):
        assert task["status"] == "completed", task
        return [download(d["url"]) for d in task["result"]["data"]]

    # A task that finds the replica idle starts at once; tasks arriving while it is busy gather
    # into the next call. So keep it busy with a slow task, then submit the four at once.
    blocker = submit({"model": model, "prompt": "busy", "size": "512x512",
                      "num_inference_steps": 48})
    while client.get(f"/v1/tasks/{blocker}").json()["status"] == "queued":
        time.sleep(0.05)
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


# ---------------------------------------------------------------- the replica's batch queue


def test_batch_queue_gathers_what_arrives_while_busy():
    import asyncio

    from deployments.batcher import Batcher

    async def scenario():
        batches: list[tuple[str, list]] = []
        release = asyncio.Event()

        async def run(key, items):
            batches.append((key, items))
            if items == ["first"]:
                await release.wait()  # the device is busy with the first call
            if "bad" in items:
                raise RuntimeError("pipeline broke")
            return [f"{key}:{i}" for i in items]

        b = Batcher(run, max_size=3, wait_s=0.05)
        first = asyncio.create_task(b.submit("m1", "first"))
        await asyncio.sleep(0.01)
        assert batches == [("m1", ["first"])]  # from idle, a lone call starts at once
        later = [asyncio.create_task(b.submit(k, i)) for k, i in
                 [("m1", "a"), ("m2", "x"), ("m1", "b"), ("m1", "c"), ("m1", "d")]]
        cancelled = asyncio.create_task(b.submit("m1", "gone"))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        release.set()
        results = await asyncio.gather(first, *later)
        assert results == ["m1:first", "m1:a", "m2:x", "m1:b", "m1:c", "m1:d"]
        # oldest first, one model per batch, at most 3, the cancelled call dropped
        assert batches[1:] == [("m1", ["a", "b", "c"]), ("m2", ["x"]), ("m1", ["d"])]

        failing = [asyncio.create_task(b.submit("m1", i)) for i in ("ok", "bad")]
        outcomes = await asyncio.gather(*failing, return_exceptions=True)
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        assert await b.submit("m1", "after") == "m1:after"  # the queue outlives a failure

    asyncio.run(scenario())
