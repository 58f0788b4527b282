"""Talking to a Tessera under test the way clients do: keys, HTTP helpers, polling."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

KEY_A, KEY_B = "test-key-a", "test-key-b"
TENANT_A, TENANT_B = "tenant-a", "tenant-b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


METRICS_PORT = free_port()  # Ray's Prometheus endpoint for this session


class Service:
    """A deployed Tessera app and HTTP clients for it."""

    def __init__(self, base_url: str, data_dir: Path, verify: str | bool = True):
        self.base_url = base_url
        self.data_dir = data_dir
        self.verify = verify  # an HTTPS service: the certificate its clients trust

    def client(self, key: str | None = KEY_A, **headers) -> httpx.Client:
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60,
                            verify=self.verify)


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
        if body["status"] in ("completed", "failed", "canceled", "aborted"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} still {body['status']} after {timeout}s")


def generate(client: httpx.Client, model: str, **fields) -> dict:
    r = client.post("/v1/images/generations", json={"model": model, "prompt": "a red fox",
                                                     **fields})
    assert r.status_code == 202, r.text
    return wait_task(client, r.json()["task_id"])


def download(url: str) -> bytes:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200, r.text
    return r.content


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "param"}, body
    return body["error"]
