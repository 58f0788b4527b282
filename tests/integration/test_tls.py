"""HTTPS: `python -m serve_app.run --tls-certfile … --tls-keyfile …` serves the API over TLS
with a certificate the test made, called with verification on, and every link it hands out
is https://."""

from __future__ import annotations

import ssl

import httpx
import pytest

from tests.support.api import KEY_A, import_model, wait_task


def test_https_with_verification_and_https_links(tls_service):
    with tls_service.client(KEY_A) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        model = import_model(client, "tessera/tiny-flux")
        made = client.post("/v1/images/generations", json={
            "model": model, "prompt": "a lighthouse", "size": "128x96", "seed": 3})
        assert made.status_code == 202, made.text
        done = wait_task(client, made.json()["task_id"])
        link = done["result"]["data"][0]["url"]
        assert link.startswith(f"{tls_service.base_url}/v1/files/"), link
        assert client.get(link).content.startswith(b"\x89PNG")
        upload = client.post("/v1/uploads", json={"content_type": "image/png", "size": 10})
        assert upload.json()["upload_url"].startswith("https://"), upload.text


def test_the_certificate_is_checked_and_plain_http_is_refused(tls_service):
    import certifi

    public_roots = ssl.create_default_context(cafile=certifi.where())
    with pytest.raises(httpx.ConnectError) as info:  # a client that does not trust it
        httpx.get(f"{tls_service.base_url}/healthz", verify=public_roots)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    with pytest.raises(httpx.HTTPError):
        response = httpx.get(tls_service.base_url.replace("https://", "http://") + "/healthz")
        response.raise_for_status()
