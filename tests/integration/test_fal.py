"""fal's own Python client (1.0.x), unchanged but for its hosts and key, against Tessera over
HTTPS: `FAL_RUN_HOST` and `FAL_QUEUE_RUN_HOST` (read when the client is imported), `FAL_KEY`,
and `SSL_CERT_FILE` trusting the test's certificate."""

from __future__ import annotations

import importlib
import io
import os
import sys
import time

import pytest
from PIL import Image

from tests.support.api import KEY_A, KEY_B, TENANT_A, import_model

TINY = "tessera/tiny-flux"


@pytest.fixture(scope="module")
def fal(tls_service):
    """fal_client pointed at the test's server (it reads its hosts when imported)."""
    host = tls_service.base_url.removeprefix("https://")
    os.environ.update(FAL_KEY=KEY_A, FAL_RUN_HOST=f"{host}/fal/run",
                      FAL_QUEUE_RUN_HOST=f"{host}/fal/queue")
    for name in [m for m in sys.modules if m == "fal_client" or m.startswith("fal_client.")]:
        del sys.modules[name]
    client = importlib.import_module("fal_client")
    yield client
    for name in ("FAL_KEY", "FAL_RUN_HOST", "FAL_QUEUE_RUN_HOST"):
        os.environ.pop(name, None)


@pytest.fixture(scope="module")
def fal_b(fal):
    """The same client with tenant B's key."""
    return fal.SyncClient(key=KEY_B)


def test_run_answers_the_result(fal):
    out = fal.run(TINY, arguments={"prompt": "a fox", "image_size": {"width": 128,
                                                                     "height": 96},
                                   "num_images": 2, "num_inference_steps": 2, "seed": 9})
    assert [(i["width"], i["height"], i["content_type"]) for i in out["images"]] == [
        (128, 96, "image/jpeg")] * 2
    assert out["seed"] == 9 and out["prompt"] == "a fox"
    assert out["has_nsfw_concepts"] == [None, None]  # no checker: unchecked, not "safe"
    assert out["images"][0]["url"].startswith("https://")
    png = fal.run(TINY, arguments={"prompt": "a fox", "output_format": "png",
                                   "image_size": "square", "sync_mode": True,
                                   "num_inference_steps": 2})
    uri = png["images"][0]["url"]
    assert uri.startswith("data:image/png;base64,") and png["images"][0]["width"] == 512


def test_subscribe_reports_the_queue_then_the_result(fal):
    busy = fal.submit(TINY, arguments={"prompt": "busy", "image_size": {"width": 768,
                                                                        "height": 768},
                                       "num_inference_steps": 30})
    updates = []
    out = fal.subscribe(TINY, arguments={"prompt": "next", "num_inference_steps": 3},
                        with_logs=True, on_queue_update=updates.append)
    kinds = [type(u).__name__ for u in updates]
    assert kinds[0] == "Queued" and kinds[-1] == "Completed", kinds
    assert isinstance(updates[0].position, int)
    assert any(log["message"] == "step 3/3" for log in updates[-1].logs)
    assert out["images"][0]["width"] == 256
    assert type(fal.status(TINY, busy.request_id)).__name__ == "Completed"  # it ran first


def test_submit_status_result_and_the_native_view(fal, tls_service):
    handle = fal.submit(TINY, arguments={"prompt": "queued", "num_inference_steps": 2})
    assert handle.status_url.startswith(tls_service.base_url + "/fal/queue/tessera/tiny-flux/")
    while type(fal.status(TINY, handle.request_id)).__name__ != "Completed":
        time.sleep(0.2)
    out = fal.result(TINY, handle.request_id)
    assert out["images"][0]["width"] == 256
    with tls_service.client(KEY_A) as client:  # the one submit path: a native task too
        assert client.get(f"/v1/tasks/{handle.request_id}").json()["status"] == "completed"


def test_cancel(fal):
    from fal_client.client import FalClientHTTPError

    handle = fal.submit(TINY, arguments={"prompt": "stopped", "num_inference_steps": 50,
                                         "image_size": {"width": 1024, "height": 1024}})
    fal.cancel(TINY, handle.request_id)
    status = fal.status(TINY, handle.request_id)
    assert type(status).__name__ == "Completed" and "canceled" in status.error
    with pytest.raises(FalClientHTTPError):
        fal.result(TINY, handle.request_id)
    with pytest.raises(FalClientHTTPError) as again:  # nothing left to cancel
        fal.cancel(TINY, handle.request_id)
    assert again.value.status_code == 400


def test_an_edit_from_a_data_uri(fal):
    buffer = io.BytesIO()
    Image.new("RGB", (144, 96), (20, 200, 40)).save(buffer, "PNG")
    out = fal.run(TINY, arguments={"prompt": "make it red", "strength": 0.5,
                                   "image_url": fal.encode(buffer.getvalue(), "image/png"),
                                   "num_inference_steps": 4})
    assert (out["images"][0]["width"], out["images"][0]["height"]) == (144, 96)


def test_an_imported_model_and_another_tenants_requests(fal, fal_b, tls_service):
    from fal_client.client import FalClientHTTPError

    with tls_service.client(KEY_A) as client:
        model = import_model(client, TINY)
    app = f"{TENANT_A}/{model}"
    handle = fal.submit(app, arguments={"prompt": "mine", "num_inference_steps": 2})
    assert _ended(fal, app, handle.request_id)
    assert fal.result(app, handle.request_id)["images"]
    for call in (fal_b.status, fal_b.result, fal_b.cancel):
        with pytest.raises(FalClientHTTPError) as other:
            call(app, handle.request_id)
        assert other.value.status_code == 404
    with pytest.raises(FalClientHTTPError) as theirs:
        fal_b.run(app, arguments={"prompt": "theirs"})
    assert theirs.value.status_code == 404


def test_errors_a_retry_cannot_fix_are_not_retried(fal):
    from fal_client.client import FalClientHTTPError

    for app, arguments in (("nobody/nothing", {"prompt": "x"}),
                           (TINY, {"prompt": "x", "sharpness": 2}),
                           ("fal-ai/flux/schnell", {"prompt": "x"})):
        with pytest.raises(FalClientHTTPError) as info:
            fal.run(app, arguments=arguments)
        assert info.value.status_code not in (408, 409, 429, 502, 503, 504), info.value


def test_a_webhook_carries_the_result(fal, receiver):
    hook = receiver()
    handle = fal.submit(TINY, arguments={"prompt": "hooked", "num_inference_steps": 2},
                        webhook_url=hook.url)
    hook.wait(1, timeout=60)
    (body,) = hook.bodies()
    assert body["request_id"] == handle.request_id and body["status"] == "OK"
    assert body["payload"]["images"][0]["url"].startswith("https://")
    assert body["error"] is None


def _ended(fal, app: str, request_id: str) -> bool:
    deadline = time.time() + 60
    while time.time() < deadline:
        if type(fal.status(app, request_id)).__name__ == "Completed":
            return True
        time.sleep(0.2)
    return False
