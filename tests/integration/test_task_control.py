"""Task control over HTTP: cancel (queued, running, finished), deadlines, the events stream with
previews, webhooks verified with the standardwebhooks library, and idempotent submission."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
from PIL import Image

from tests.support.api import error_of, wait_task

SLOW = {"size": "1024x1024", "num_inference_steps": 50}  # about 7 s on the tiny FLUX here


def submit(client, model, headers=None, **fields) -> dict:
    r = client.post("/v1/images/generations", headers=headers or {},
                    json={"model": model, "prompt": "a red fox", **fields})
    assert r.status_code == 202, r.text
    return r.json()


def wait_for(client, task_id, predicate, timeout=60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = client.get(f"/v1/tasks/{task_id}").json()
        if predicate(task):
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never got there: {task}")


def outputs_of(service, task_id) -> list:
    return [p for p in (service.data_dir / "outputs").rglob("*") if task_id in str(p)]


def test_cancel_queued_running_and_finished(client_a, tiny_flux_a, service):
    running = submit(client_a, tiny_flux_a, seed=1, **SLOW)["task_id"]
    queued = submit(client_a, tiny_flux_a, seed=2, size="256x256")["task_id"]
    started = wait_for(client_a, running, lambda t: (t.get("progress") or {}).get("step", 0) >= 2)
    assert client_a.get(f"/v1/tasks/{queued}").json()["status"] == "queued"

    r = client_a.post(f"/v1/tasks/{queued}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled" and r.json()["result"] is None

    step_s = (time.time() - started["started_at"]) / started["progress"]["step"]
    canceled_at = time.time()
    r = client_a.post(f"/v1/tasks/{running}/cancel")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["status"] == "canceled" and view["result"] is None
    stopped_step = view["progress"]["step"]
    assert stopped_step < 50

    # the replica is free again within about one step, not after the remaining ~45
    after = client_a.post("/v1/images/generations", headers={"Prefer": "wait=60"},
                          json={"model": tiny_flux_a, "prompt": "next", "size": "64x64"})
    assert after.status_code == 200 and after.json()["status"] == "completed", after.text
    freed_in = after.json()["started_at"] - canceled_at
    print(f"cancel freed the replica in {freed_in:.3f} s; a step takes {step_s:.3f} s")
    assert freed_in < 3 * step_s + 1.0, (freed_in, step_s)
    assert freed_in < (50 - stopped_step) * step_s / 2, (freed_in, step_s)

    for task_id in (running, queued):
        final = client_a.get(f"/v1/tasks/{task_id}").json()
        assert final["status"] == "canceled" and final["result"] is None
        assert outputs_of(service, task_id) == []
    assert client_a.get("/v1/tasks", params={"status": "canceled"}).json()["data"]

    err = error_of(client_a.post(f"/v1/tasks/{after.json()['id']}/cancel"), 409)
    assert err["code"] == "task_not_cancelable"
    assert error_of(client_a.post("/v1/tasks/task_nope/cancel"), 404)["code"] == "task_not_found"


def test_deadline_before_start_aborts_and_while_running_cancels(client_a, tiny_flux_a):
    busy = submit(client_a, tiny_flux_a, seed=3, **SLOW)["task_id"]
    wait_for(client_a, busy, lambda t: t["status"] == "in_progress")
    late = submit(client_a, tiny_flux_a, headers={"Cancel-After": "1s"}, size="64x64")
    aborted = wait_task(client_a, late["task_id"], timeout=30)
    assert aborted["status"] == "aborted"
    assert aborted["error"]["code"] == "deadline_exceeded"
    assert aborted["cancel_at"] == pytest.approx(aborted["created_at"] + 1, abs=0.01)
    client_a.post(f"/v1/tasks/{busy}/cancel")

    slow = submit(client_a, tiny_flux_a, seed=4, cancel_after="3s", **SLOW)["task_id"]
    ended = wait_task(client_a, slow, timeout=60)
    assert ended["status"] == "canceled" and ended["result"] is None
    assert ended["error"]["code"] == "deadline_exceeded"
    assert ended["completed_at"] - ended["created_at"] == pytest.approx(3, abs=0.5)
    assert client_a.get("/v1/tasks", params={"status": "aborted"}).json()["data"]

    for bad in ("soon", "0", "-5s"):
        r = client_a.post("/v1/images/generations", headers={"Cancel-After": bad},
                          json={"model": tiny_flux_a, "prompt": "x"})
        assert error_of(r, 400)["param"] == "Cancel-After"
    r = client_a.post("/v1/images/generations",
                      json={"model": tiny_flux_a, "prompt": "x", "cancel_after": "tomorrow"})
    assert r.status_code == 400


def read_events(client, task_id, headers=None, stop_after=None) -> list[dict]:
    events, current = [], {}
    with client.stream("GET", f"/v1/tasks/{task_id}/events", headers=headers or {},
                       timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                    if stop_after and stop_after(current):
                        break
                current = {}
                continue
            name, _, value = line.partition(":")
            current[name] = value.strip()
    return events


def test_events_stream_progress_previews_and_resume(client_a, tiny_flux_a):
    task = submit(client_a, tiny_flux_a, size="256x256", num_inference_steps=12, preview=True)
    task_id = task["task_id"]
    first = read_events(client_a, task_id, stop_after=lambda e: e["event"] == "progress")
    assert first[0]["event"] == "status"
    seen = first[-1]["id"]
    rest = read_events(client_a, task_id, headers={"Last-Event-ID": seen})
    names = [e["event"] for e in rest]
    assert names[-1] == "done" and "progress" in names
    ids = [int(e["id"]) for e in rest]
    assert ids[0] > int(seen) and ids == sorted(ids)  # resumed after what was seen
    steps = [json.loads(e["data"])["step"] for e in rest if e["event"] == "progress"]
    assert steps == sorted(steps) and steps[-1] == 12
    assert json.loads(first[-1]["data"])["step"] < steps[0]
    final = json.loads(rest[-1]["data"])
    assert final["id"] == task_id and final["status"] == "completed" and final["result"]["data"]
    previews = [json.loads(e["data"]) for e in rest if e["event"] == "preview"]
    assert previews, names
    header, _, payload = previews[-1]["image"].partition(",")
    assert header == "data:image/jpeg;base64"
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    assert image.format == "JPEG" and max(image.size) <= 256
    # a finished task's stream is its final view at once; an unknown one a 404
    again = read_events(client_a, task_id)
    assert again[-1]["event"] == "done"
    assert client_a.get("/v1/tasks/task_nope/events").status_code == 404


def test_webhooks_are_signed_and_retried(client_a, client_b, tiny_flux_a, receiver):
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    secret = client_a.get("/v1/webhooks/secret").json()["key"]
    assert secret.startswith("whsec_")
    assert client_b.get("/v1/webhooks/secret").json()["key"] != secret
    assert client_a.get("/v1/webhooks/secret").json()["key"] == secret

    good = receiver()
    task = submit(client_a, tiny_flux_a, size="64x64", webhook=good.url,
                  webhook_events_filter=["start", "completed"])
    good.wait(2)
    events = []
    for headers, body in good.requests:
        payload = Webhook(secret).verify(body, headers)  # raises on a bad signature
        assert payload["id"] == task["task_id"]
        events.append(payload["status"])
    assert events == ["in_progress", "completed"]
    assert len({h["webhook-id"] for h, _ in good.requests}) == 2
    with pytest.raises(WebhookVerificationError):
        Webhook(client_b.get("/v1/webhooks/secret").json()["key"]).verify(
            good.requests[-1][1], good.requests[-1][0])
    view = wait_for(client_a, task["task_id"],
                    lambda t: (t.get("webhook") or {}).get("status") == "delivered")
    assert view["webhook"] == {"status": "delivered", "attempts": 1, "last_error": None}

    flaky = receiver(fail_first=2)
    task = submit(client_a, tiny_flux_a, size="64x64", webhook=flaky.url)
    flaky.wait(3)
    assert len({h["webhook-id"] for h, _ in flaky.requests}) == 1  # one delivery, three tries
    for headers, body in flaky.requests:
        assert Webhook(secret).verify(body, headers)["status"] == "completed"
    view = wait_for(client_a, task["task_id"],
                    lambda t: (t.get("webhook") or {}).get("status") == "delivered")
    assert view["webhook"]["attempts"] == 3
    time.sleep(1.0)
    assert len(flaky.requests) == 3


def test_webhook_urls_are_checked(client_a, tiny_flux_a):
    for url in ("ftp://example.com/x", "not a url"):
        r = client_a.post("/v1/images/generations",
                          json={"model": tiny_flux_a, "prompt": "x", "webhook": url})
        assert error_of(r, 400)["param"] == "webhook"


def test_webhooks_to_private_addresses_are_refused_by_default(deploy):
    from tests.support.api import import_model

    strict = deploy("strict", {"families": {"flux": {"num_replicas": 1}}})
    with strict.client() as c:
        model = import_model(c, "tessera/tiny-flux")
        r = c.post("/v1/images/generations", json={"model": model, "prompt": "x",
                                                   "webhook": "http://127.0.0.1:9/hook"})
        err = error_of(r, 400)
        assert err["code"] == "webhook_url_not_allowed" and err["param"] == "webhook"


def test_idempotency_key_replays_and_refuses_another_body(client_a, tiny_flux_a):
    key = {"Idempotency-Key": f"order-{time.time()}"}
    body = {"model": tiny_flux_a, "prompt": "the same request", "size": "64x64"}
    first = client_a.post("/v1/images/generations", headers=key, json=body)
    again = client_a.post("/v1/images/generations", headers=key, json=body)
    assert first.status_code == again.status_code == 202
    assert first.json()["task_id"] == again.json()["task_id"]
    other = client_a.post("/v1/images/generations", headers=key, json={**body, "seed": 9})
    assert error_of(other, 422)["code"] == "idempotency_key_reused"
    # a new key is a new task
    fresh = client_a.post("/v1/images/generations",
                          headers={"Idempotency-Key": key["Idempotency-Key"] + "-2"}, json=body)
    assert fresh.json()["task_id"] != first.json()["task_id"]
    assert wait_task(client_a, first.json()["task_id"])["status"] == "completed"


def test_openapi_lists_the_task_control_routes(client_a):
    paths = client_a.get("/openapi.json").json()["paths"]
    assert "/v1/tasks/{task_id}/cancel" in paths and "/v1/tasks/{task_id}/events" in paths
    assert "/v1/webhooks/secret" in paths


def test_cancelling_one_task_of_a_shared_call_leaves_the_others_bytes(client_a, tiny_flux_a):
    from tests.support.api import download

    blocker = submit(client_a, tiny_flux_a, seed=5, size="512x512", num_inference_steps=40)
    wait_for(client_a, blocker["task_id"], lambda t: t["status"] == "in_progress")
    shared = {"size": "512x512", "num_inference_steps": 30}
    kept = submit(client_a, tiny_flux_a, seed=11, **shared)["task_id"]
    dropped = submit(client_a, tiny_flux_a, seed=12, **shared)["task_id"]
    # both wait in the replica's batch queue behind the blocker, then share one call
    running = wait_for(client_a, dropped, lambda t: (t.get("progress") or {}).get("step", 0) >= 2)
    other = client_a.get(f"/v1/tasks/{kept}").json()
    assert other["status"] == "in_progress"
    assert abs(other["started_at"] - running["started_at"]) < 0.5  # one call started both
    assert client_a.post(f"/v1/tasks/{dropped}/cancel").json()["status"] == "canceled"
    done = wait_task(client_a, kept)
    assert done["status"] == "completed", done
    alone = wait_task(client_a, submit(client_a, tiny_flux_a, seed=11, **shared)["task_id"])
    assert download(done["result"]["data"][0]["url"]) == download(
        alone["result"]["data"][0]["url"])
