"""The ingress replica stays a small process: the request paths that need the model side
(validating a tiny checkpoint or a LoRA repository, listing the catalog, staging a built-in tiny
adapter that does not exist yet) leave it without torch, which diffusers, transformers' models
and peft all load."""

from __future__ import annotations

from pathlib import Path

import psutil

from tests.support.api import KEY_A, generate


def replica_pids(app: str, deployment: str) -> list[int]:
    """The worker processes of a Serve deployment's replicas (Ray titles them
    `ray::ServeReplica:<app>:<deployment>`)."""
    title = f"ServeReplica:{app}:{deployment}"
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(title in part for part in proc.info["cmdline"] or ()):
            pids.append(proc.pid)
    return pids


def loads_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_the_ingress_replica_never_loads_torch(service):
    with service.client(KEY_A) as client:
        assert client.get("/v1/models").status_code == 200  # the catalog, with its families
        for model in ("tessera/tiny-flux", "tessera/tiny-sdxl-lora", "tessera/tiny-pixart-sigma"):
            assert client.post("/v1/my-models/validate-hf",
                               json={"hf_model_id": model}).status_code == 200
        # the tiny SD3 adapter is made on first use: by the model registry, not here
        done = generate(client, "tessera/tiny-sd3", seed=1,
                        loras=[{"path": "tessera/tiny-sd3-lora", "scale": 0.5}])
        assert done["status"] == "completed", done
    ingress = replica_pids("main", "ingress")
    assert ingress, "no ingress replica process found"
    assert not any(loads_torch(pid) for pid in ingress)
    # the family replicas and the registry do load it: the check can see it where it is
    assert any(loads_torch(pid) for pid in replica_pids("main", "family-sd3"))
