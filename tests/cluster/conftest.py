"""Cluster tier: a multi-node Ray cluster on 127.0.0.1 (a head without GPUs, two workers with
a fake GPU each) serving Tessera, started once for the module and shut down after it. These
tests run in their own pytest process (`make test`), apart from the single-node session."""

from __future__ import annotations

import os

import httpx
import pytest

KEY = "cluster-key"


@pytest.fixture(scope="module")
def cluster():
    os.environ["TESSERA_API_KEYS"] = f"{KEY}=tenant-c"
    os.environ["HF_HUB_OFFLINE"] = "1"
    from cluster.local import LocalCluster, gpu_family_args

    c = LocalCluster(gpu_nodes=2)
    args = gpu_family_args(max_replicas=2)
    # a rarely used family: no replica until its first task, none again soon after its last
    args["families"]["sdxl"] = {"num_gpus": 1, "num_cpus": 0.5, "cold_start_deadline_s": 120,
                                "autoscaling": {"min_replicas": 0, "max_replicas": 1,
                                                "downscale_delay_s": 3,
                                                "downscale_to_zero_delay_s": 3,
                                                "metrics_interval_s": 0.5,
                                                "look_back_period_s": 2}}
    c.url = c.serve({**args, "limits": {"task_deadline_s": 300}})
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def client(cluster):
    with httpx.Client(base_url=cluster.url, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def model(client):
    v = client.post("/v1/my-models/validate-hf", json={"hf_model_id": "tessera/tiny-flux"})
    r = client.post("/v1/my-models/import-hf", json={"validation_id": v.json()["validation_id"]})
    return r.json()["id"]
