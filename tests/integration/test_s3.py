"""The MinIO/S3 output store against a real S3-compatible server started here."""

from __future__ import annotations

import base64
import io
import os
import re
import time

import httpx
import pytest
from PIL import Image

from tests.support.api import KEY_A, KEY_B, TENANT_A, free_port, generate, import_model, wait_task
from tests.support.s3server import ExternalS3, RcloneS3

URL_TTL_S = 4
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def minio_client(server):
    from minio import Minio

    return Minio(server.endpoint, server.access_key, server.secret_key, secure=server.secure,
                 region="us-east-1")


@pytest.fixture(scope="module")
def s3(session_dir):
    if os.environ.get("TESSERA_TEST_S3_ENDPOINT"):
        yield ExternalS3()
        return
    server = RcloneS3(session_dir / "s3-main", free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_app(deploy, s3):
    return deploy("s3", {"storage": {"s3": s3.settings("tessera-test-main"),
                                     "url_ttl_s": URL_TTL_S, "max_upload_bytes": 4096}})


@pytest.fixture(scope="module")
def a(s3_app):
    with s3_app.client(KEY_A) as c:
        yield c


@pytest.fixture(scope="module")
def b(s3_app):
    with s3_app.client(KEY_B) as c:
        yield c


@pytest.fixture(scope="module")
def model_a(a):
    return import_model(a, "tessera/tiny-flux")


def test_generate_flow_presigned_url_and_key_layout(a, s3, model_a):
    task = generate(a, model_a, size="80x64", seed=11)
    assert task["status"] == "completed", task
    url = task["result"]["data"][0]["url"]
    assert "X-Amz-Signature=" in url
    path = httpx.URL(url).path
    assert path.startswith("/tessera-test-main/")
    key = path[len("/tessera-test-main/"):]
    assert re.fullmatch(rf"{TENANT_A}/\d{{4}}/\d{{2}}/\d{{2}}/{task['id']}/0\.png", key), key
    r = httpx.get(url)  # a plain GET, no API key: the URL carries its own authorisation
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).size == (80, 64)
    assert minio_client(s3).stat_object("tessera-test-main", key).content_type == "image/png"


def test_b64_json_read_back_from_the_store(a, model_a):
    task = generate(a, model_a, size="64x64", response_format="b64_json", seed=2)
    item = task["result"]["data"][0]
    assert base64.b64decode(item["b64_json"]) == httpx.get(item["url"]).content


def test_tampered_and_expired_urls_are_refused(a, model_a):
    task = generate(a, model_a, size="64x64")
    url = task["result"]["data"][0]["url"]
    sig = re.search(r"X-Amz-Signature=([0-9a-f]+)", url).group(1)
    tampered = url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    assert httpx.get(tampered).status_code == 403
    other_object = url.replace("/0.png?", "/1.png?")
    assert httpx.get(other_object).status_code == 403
    time.sleep(URL_TTL_S + 1.5)
    expired = httpx.get(url)
    # AWS and MinIO answer 403 "Request has expired"; rclone answers 400: refused either way
    assert expired.status_code in (400, 403) and b"PNG" not in expired.content[:8]
    fresh = a.get(f"/v1/tasks/{task['id']}").json()["result"]["data"][0]["url"]
    assert httpx.get(fresh).status_code == 200  # polling again gives a fresh link


def test_upload_round_trip(a):
    r = a.post("/v1/uploads", json={"content_type": "image/png", "size": len(PNG_1x1)})
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["upload_id"].startswith("upl_") and up["expires_at"] > time.time()
    assert a.get(f"/v1/uploads/{up['upload_id']}").status_code == 404  # nothing PUT yet
    put = httpx.put(up["upload_url"], content=PNG_1x1, headers=up["headers"])
    assert put.status_code == 200, put.text
    info = a.get(f"/v1/uploads/{up['upload_id']}").json()
    assert info == {"upload_id": up["upload_id"], "object": "upload", "status": "uploaded",
                    "size": len(PNG_1x1), "content_type": "image/png"}


def test_upload_rules(a):
    r = a.post("/v1/uploads", json={"content_type": "image/gif", "size": 10})
    assert r.status_code == 400 and r.json()["error"]["param"] == "content_type"
    r = a.post("/v1/uploads", json={"content_type": "image/png", "size": 5000})
    assert r.status_code == 413 and r.json()["error"]["param"] == "size"
    up = a.post("/v1/uploads", json={"content_type": "image/png", "size": 10}).json()
    tampered = up["upload_url"].replace("X-Amz-Expires=", "X-Amz-Expires=9")
    assert httpx.put(tampered, content=PNG_1x1, headers=up["headers"]).status_code == 403


def test_tenant_isolation_of_outputs_and_uploads(a, b, model_a):
    task = generate(a, model_a, size="64x64")
    assert b.get(f"/v1/tasks/{task['id']}").json()["error"]["code"] == "task_not_found"
    up = a.post("/v1/uploads", json={"content_type": "image/png", "size": len(PNG_1x1)}).json()
    httpx.put(up["upload_url"], content=PNG_1x1, headers=up["headers"])
    assert a.get(f"/v1/uploads/{up['upload_id']}").status_code == 200
    r = b.get(f"/v1/uploads/{up['upload_id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "upload_not_found"


# ---------------------------------------------------------------- outage


@pytest.fixture(scope="module")
def flaky_s3(session_dir):
    server = RcloneS3(session_dir / "s3-flaky", free_port()).start()
    yield server
    server.stop()


def test_store_outage_fails_task_and_service_recovers(deploy, flaky_s3):
    service = deploy("s3down", {"storage": {"s3": flaky_s3.settings("tessera-test-flaky")}})
    with service.client(KEY_A) as c:
        model = import_model(c, "tessera/tiny-flux")
        assert generate(c, model, size="64x64")["status"] == "completed"
        flaky_s3.stop()
        try:
            r = c.post("/v1/images/generations", json={"model": model, "prompt": "p",
                                                       "size": "64x64"})
            assert r.status_code == 202
            failed = wait_task(c, r.json()["task_id"], timeout=90)
            assert failed["status"] == "failed"
            assert failed["error"]["code"] == "storage_unavailable"
            assert c.get("/healthz").status_code == 200
            assert c.get("/v1/models").status_code == 200
        finally:
            flaky_s3.start()
        after = generate(c, model, size="64x64")
        assert after["status"] == "completed", after
        assert httpx.get(after["result"]["data"][0]["url"]).status_code == 200


# ---------------------------------------------------------------- retention


def test_retention_removes_outputs_and_task_records(deploy, s3):
    retention_s = 4
    service = deploy("s3ret", {"storage": {
        "s3": s3.settings("tessera-test-retention"), "retention_days": retention_s / 86400,
        "retention_sweep_interval_s": 1}})
    with service.client(KEY_A) as c:
        model = import_model(c, "tessera/tiny-flux")
        task = generate(c, model, size="64x64")
        assert task["status"] == "completed"
        key = httpx.URL(task["result"]["data"][0]["url"]).path.split("/", 2)[2]
        def objects():
            return [o.object_name for o in minio_client(s3).list_objects(
                "tessera-test-retention", recursive=True)]
        assert key in objects()
        deadline = time.time() + 30
        while time.time() < deadline:
            r = c.get(f"/v1/tasks/{task['id']}")
            if r.status_code == 404:
                break
            time.sleep(0.5)
        assert r.status_code == 404 and r.json()["error"]["code"] == "expired"
        assert key not in objects()


def test_image_url_to_private_address_is_refused_by_default(a, model_a):
    r = a.post("/v1/images/edits", json={
        "model": model_a, "prompt": "p", "image": {"image_url": "http://127.0.0.1:9/x.png"}})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "image_url_not_allowed"
    assert r.json()["error"]["param"] == "image"
