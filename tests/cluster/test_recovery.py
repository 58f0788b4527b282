"""Nothing accepted is lost: the task actor killed (`kill -9`) in a burst, a family replica
killed mid-generation, the whole server stopped and started again, the database stopped.

These start their own Ray (and PostgreSQL) in this process, so they run in the cluster tier's
own pytest process. Every answer seen meanwhile is recorded: none may be a 500.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import httpx
import pytest

from cluster.local import actor_pids
from loadtests.local_postgres import Postgres, available
from tests.support.api import download, free_port

pytestmark = pytest.mark.cluster

KEY = "recovery-key"
FLUX_REPLICA = "ServeReplica:{app}:family-flux"


class Server:
    """Tessera on a local Ray in this process; `restart` is a whole stop and start."""

    def __init__(self, data_dir, args: dict | None = None, app: str = "rec"):
        self.data_dir, self.args, self.app = str(data_dir), args or {}, app
        self.port = free_port()

    def start(self) -> Server:
        import ray
        from ray import serve

        from serve_app.builder import build_app

        os.environ["TESSERA_API_KEYS"] = f"{KEY}=tenant-r"
        os.environ["HF_HUB_OFFLINE"] = "1"
        # a fresh local instance, never another Ray that happens to run on this machine
        ray.init(address="local", num_cpus=6, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        args = {"data_dir": self.data_dir, "instance": self.app,
                "families": {"flux": {"num_replicas": 1, "max_batch_size": 1}},
                "limits": {"task_deadline_s": 600}, **self.args}
        serve.run(build_app(args), name=self.app, route_prefix="/")
        return self

    def stop(self) -> None:
        import ray
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60,
                            headers={"Authorization": f"Bearer {KEY}"})


class Seen:
    """Every status code the clients saw."""

    def __init__(self):
        self.codes: list[int] = []

    def get(self, client, path):
        r = client.get(path)
        self.codes.append(r.status_code)
        return r

    def post(self, client, path, body):
        r = client.post(path, json=body)
        self.codes.append(r.status_code)
        return r


def import_tiny(client) -> str:
    v = client.post("/v1/my-models/validate-hf", json={"hf_model_id": "tessera/tiny-flux"})
    r = client.post("/v1/my-models/import-hf", json={"validation_id": v.json()["validation_id"]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def submit_burst(client, seen: Seen, model: str, n: int, steps: int = 4) -> list[str]:
    def one(i):
        r = seen.post(client, "/v1/images/generations", {
            "model": model, "prompt": f"burst {i}", "size": "64x64", "seed": i,
            "num_inference_steps": steps})
        assert r.status_code == 202, r.text
        return r.json()["task_id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def wait_all(client, seen: Seen, ids: list[str], timeout: float = 300) -> dict[str, dict]:
    """Poll every task until it ends, retrying 503s as a client does."""
    done: dict[str, dict] = {}
    end = time.time() + timeout
    while len(done) < len(ids) and time.time() < end:
        for task_id in ids:
            if task_id in done:
                continue
            r = seen.get(client, f"/v1/tasks/{task_id}")
            if r.status_code == 503:
                time.sleep(0.5)
                break
            assert r.status_code == 200, r.text
            if r.json()["status"] in ("completed", "failed"):
                done[task_id] = r.json()
        time.sleep(0.2)
    assert len(done) == len(ids), f"{len(ids) - len(done)} tasks still running"
    return done


def assert_each_completed_once(client, seen: Seen, ids: list[str], done: dict) -> None:
    assert all(t["status"] == "completed" for t in done.values()), [
        t["error"] for t in done.values() if t["status"] != "completed"]
    for t in done.values():
        assert [h["status"] for h in t["history"]].count("completed") == 1
    listed = [t["id"] for t in seen.get(client, "/v1/tasks?limit=500").json()["data"]]
    assert sorted(i for i in listed if i in set(ids)) == sorted(ids)  # none lost, none twice
    assert 500 not in seen.codes and not any(c > 503 for c in seen.codes), set(seen.codes)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("recovery") / "data").start()
    yield s
    s.stop()


def test_killing_the_task_actor_in_a_burst_loses_nothing(server):
    seen = Seen()
    with server.client() as client:
        model = import_tiny(client)
        ids = submit_burst(client, seen, model, 60)
        end = time.time() + 120
        while time.time() < end and sum(
                seen.get(client, f"/v1/tasks/{i}").json()["status"] == "completed"
                for i in ids[:10]) < 3:
            time.sleep(0.3)
        [pid] = actor_pids("TaskManager")
        os.kill(pid, signal.SIGKILL)
        # the API keeps answering through the restart: 200, or 503 with Retry-After
        more = submit_burst(client, seen, model, 5)
        done = wait_all(client, seen, ids + more)
        assert actor_pids("TaskManager") != [pid]  # Ray restarted it
        assert_each_completed_once(client, seen, ids + more, done)


def test_killing_the_replica_mid_generation_retries_the_task(server):
    seen = Seen()
    with server.client() as client:
        model = import_tiny(client)
        r = seen.post(client, "/v1/images/generations", {
            "model": model, "prompt": "a slow one", "size": "512x512",
            "num_inference_steps": 40})
        task_id = r.json()["task_id"]
        while seen.get(client, f"/v1/tasks/{task_id}").json()["status"] != "in_progress":
            time.sleep(0.1)
        time.sleep(0.5)  # mid-generation
        for pid in actor_pids(FLUX_REPLICA.format(app=server.app)):
            os.kill(pid, signal.SIGKILL)
        task = wait_all(client, seen, [task_id])[task_id]
        assert task["status"] == "completed" and task["attempts"] == 2, task
        assert download(task["result"]["data"][0]["url"])[:4] == b"\x89PNG"


def test_a_whole_restart_in_a_burst_completes_every_task(server):
    seen = Seen()
    with server.client() as client:
        model = import_tiny(client)
        ids = submit_burst(client, seen, model, 30, steps=8)
        while sum(seen.get(client, f"/v1/tasks/{i}").json()["status"] == "completed"
                  for i in ids[:6]) < 2:
            time.sleep(0.3)
    server.stop()  # queued, running and completed tasks: all in the database
    server.start()
    with server.client() as client:
        done = wait_all(client, seen, ids)
        assert_each_completed_once(client, seen, ids, done)
        for t in done.values():  # every image readable after the restart
            assert download(t["result"]["data"][0]["url"])[:4] == b"\x89PNG"
        # the imported model came back too: a new task on it is accepted and runs
        more = submit_burst(client, seen, model, 1)
        assert wait_all(client, seen, more)[more[0]]["status"] == "completed"


def test_the_database_stopped_for_10_s_answers_only_503_and_loses_nothing(server, tmp_path):
    if not available():
        pytest.skip("PostgreSQL 15 is not installed here (.ci/run installs it)")
    server.stop()  # one Ray at a time in this process: this test runs its own server
    pg = Postgres(free_port()).init().start()
    seen = Seen()
    server = Server(tmp_path / "data", {"database": {"url": pg.url, "read_wait_s": 2}},
                    app="pg").start()
    try:
        with server.client() as client:
            model = import_tiny(client)
            accepted = submit_burst(client, seen, model, 10)
            pg.stop("immediate")
            stopped_at = time.time()
            refused = 0
            while time.time() - stopped_at < 10:  # keep submitting and polling meanwhile
                r = seen.post(client, "/v1/images/generations",
                              {"model": model, "prompt": "during", "size": "64x64"})
                if r.status_code == 202:
                    accepted.append(r.json()["task_id"])
                else:
                    assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
                    refused += 1
                seen.get(client, f"/v1/tasks/{accepted[0]}")
                time.sleep(0.5)
            pg.start()
            assert refused > 0
            done = wait_all(client, seen, accepted)
            assert_each_completed_once(client, seen, accepted, done)
            assert set(seen.codes) <= {200, 202, 503}, set(seen.codes)
    finally:
        server.stop()
        pg.destroy()
