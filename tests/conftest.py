"""Shared fixtures: one Ray instance and one Tessera app for the whole session.

Ray and Serve are started here, bound to 127.0.0.1, and stopped at the end. Environment that the
replicas must see (API keys, offline Hub, HF cache) is set before `ray.init`, because Ray's worker
processes inherit the environment of the raylet it starts.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

# Read by Ray at import time: keeps multi-node test clusters on 127.0.0.1 (the cluster tests).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import httpx
import pytest

KEY_A, KEY_B = "test-key-a", "test-key-b"
TENANT_A, TENANT_B = "tenant-a", "tenant-b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


METRICS_PORT = free_port()  # Ray's Prometheus endpoint for this session


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tessera")


@pytest.fixture(scope="session")
def hf_home(session_dir) -> Path:
    path = session_dir / "hf-home"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def ray_session(session_dir, hf_home):
    import ray

    os.environ.update({
        "TESSERA_API_KEYS": f"{KEY_A}={TENANT_A},{KEY_B}={TENANT_B}",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })
    ray.init(num_cpus=8, num_gpus=0, include_dashboard=False, log_to_driver=False,
             configure_logging=False, _metrics_export_port=METRICS_PORT)
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


class Service:
    """A deployed Tessera app and HTTP clients for it."""

    def __init__(self, base_url: str, data_dir: Path):
        self.base_url = base_url
        self.data_dir = data_dir

    def client(self, key: str | None = KEY_A, **headers) -> httpx.Client:
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)


@pytest.fixture(scope="session")
def deploy(ray_session, session_dir):
    """Deploy a Tessera app from config args; returns a `Service`."""
    from ray import serve

    from serve_app.builder import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deployed: dict[str, Service] = {}

    def _deploy(name: str, args: dict | None = None) -> Service:
        if name in deployed:
            return deployed[name]
        data_dir = session_dir / f"data-{name}"
        args = {"data_dir": str(data_dir), "instance": name, **(args or {})}
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")
        service = Service(f"http://127.0.0.1:{port}/{name}", data_dir)
        deployed[name] = service
        return service

    return _deploy


@pytest.fixture(scope="session")
def service(deploy, traces_path) -> Service:
    from deployments.registry import FAMILIES

    # Every family, one replica each, so no test waits on a cold start.
    return deploy("main", {
        "limits": {"task_deadline_s": 120},
        "families": {name: {"num_replicas": 1} for name in FAMILIES},
        "inputs": {"allow_private_urls": True, "max_image_bytes": 1_000_000,
                   "max_image_pixels": 2048 * 2048},
        "tracing": {"exporter": "file", "path": str(traces_path)}})


@pytest.fixture(scope="session")
def traces_path(session_dir) -> Path:
    return session_dir / "traces.jsonl"


@pytest.fixture(scope="session")
def client_a(service):
    with service.client(KEY_A) as c:
        yield c


@pytest.fixture(scope="session")
def client_b(service):
    with service.client(KEY_B) as c:
        yield c


def import_model(client: httpx.Client, hf_model_id: str, accepted_license: bool = False) -> str:
    r = client.post("/v1/my-models/validate-hf", json={"hf_model_id": hf_model_id})
    assert r.status_code == 200, r.text
    assert r.json()["supported"], r.json()
    r = client.post("/v1/my-models/import-hf", json={
        "validation_id": r.json()["validation_id"], "execution_mode": "instant",
        "accepted_license": accepted_license})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_task(client: httpx.Client, task_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get(f"/v1/tasks/{task_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} still {body['status']} after {timeout}s")


def generate(client: httpx.Client, model: str, **fields) -> dict:
    r = client.post("/v1/images/generations", json={"model": model, "prompt": "a red fox",
                                                     **fields})
    assert r.status_code == 202, r.text
    return wait_task(client, r.json()["task_id"])


@pytest.fixture(scope="session")
def tiny_flux_a(client_a) -> str:
    return import_model(client_a, "tessera/tiny-flux")


@pytest.fixture(scope="session")
def local_flux_dir(session_dir) -> Path:
    """A tiny FLUX checkpoint written by save_pretrained into a plain directory."""
    from deployments.registry import FAMILIES

    path = session_dir / "checkpoints" / "flux-local"
    FAMILIES["flux"].build_tiny(str(path))
    (path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny flux\n")
    return path


@pytest.fixture(scope="session")
def noncommercial_flux_dir(session_dir, local_flux_dir) -> Path:
    import shutil

    path = session_dir / "checkpoints" / "flux-nc"
    shutil.copytree(local_flux_dir, path)
    (path / "README.md").write_text(
        "---\nlicense: other\nlicense_name: flux-1-dev-non-commercial-license\n---\n# A model\n")
    return path


@pytest.fixture(scope="session")
def corrupt_flux_dir(session_dir, local_flux_dir) -> Path:
    """Valid layout, unreadable transformer weights: validation passes, loading fails."""
    import shutil

    path = session_dir / "checkpoints" / "flux-corrupt"
    shutil.copytree(local_flux_dir, path)
    (path / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 64)
    return path


@pytest.fixture(scope="session")
def cached_repo_id(hf_home, local_flux_dir) -> str:
    """A repo laid out in the Hugging Face cache as `hf_hub_download` leaves it."""
    import shutil

    repo_id, revision = "tessera-tests/tiny-flux-cached", "0" * 39 + "1"
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(local_flux_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return repo_id


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
