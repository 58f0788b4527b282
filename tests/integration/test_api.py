"""The whole serving path through HTTP, as a client sees it."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import pytest
from PIL import Image

from tests.support.api import KEY_A, TENANT_A, download, error_of, generate, import_model, wait_task

# ---------------------------------------------------------------- health and auth


def test_health_and_readiness(service):
    with service.client(None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and "flux" in ready.json()["families"]


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer wrong"}, "invalid_api_key"),
    ({"Authorization": "Basic abc"}, "missing_api_key"),
    ({"api_key": "wrong"}, "invalid_api_key"),
])
def test_bad_or_missing_key_is_401(service, headers, code):
    with service.client(None, **headers) as c:
        assert error_of(c.get("/v1/models"), 401)["code"] == code


@pytest.mark.parametrize("header", ["api_key", "API-Key"])
def test_alternative_key_headers(service, header):
    with service.client(None, **{header: KEY_A}) as c:
        assert c.get("/v1/models").status_code == 200


# ---------------------------------------------------------------- validate and import


def test_validate_builtin_tiny(client_a):
    r = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": "tessera/tiny-flux"})
    body = r.json()
    assert r.status_code == 200
    assert body["supported"] is True and body["errors"] == []
    assert body["family"] == "flux" and body["pipeline_class"] == "FluxPipeline"
    assert body["pipeline_tag"] == "text-to-image"
    assert body["license"] == "apache-2.0" and body["requires_license_acceptance"] is False
    assert body["pricing"]["per_image"] > 0
    params = body["parameters"]
    assert params["min_steps"] <= params["num_inference_steps"] <= params["max_steps"]
    assert body["validation_id"].startswith("val_")


def test_validate_unreachable_hub_model_says_where_it_looked(client_a, hf_home):
    r = client_a.post("/v1/my-models/validate-hf",
                      json={"hf_model_id": "black-forest-labs/FLUX.1-schnell"})
    body = r.json()
    assert r.status_code == 200 and body["supported"] is False
    message = " ".join(body["errors"])
    assert "the Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    assert str(hf_home) not in message  # no server path in any answer


def test_validate_directory_without_model_index(client_a, model_dir):
    tmp_path = model_dir
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    body = client_a.post("/v1/my-models/validate-hf",
                         json={"hf_model_id": str(tmp_path)}).json()
    assert body["supported"] is False
    assert "not a diffusers pipeline" in body["errors"][0]


def test_validate_unsupported_pipeline_class_names_it(client_a, model_dir):
    tmp_path = model_dir
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "AudioLDMPipeline"}))
    body = client_a.post("/v1/my-models/validate-hf",
                         json={"hf_model_id": str(tmp_path)}).json()
    assert body["supported"] is False and "AudioLDMPipeline" in body["errors"][0]


def test_validate_missing_weights(client_a, local_flux_dir, model_dir):
    tmp_path = model_dir
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(local_flux_dir, broken)
    shutil.rmtree(broken / "transformer")
    body = client_a.post("/v1/my-models/validate-hf",
                         json={"hf_model_id": str(broken)}).json()
    assert body["supported"] is False and "transformer" in " ".join(body["errors"])


def test_validate_bad_id_and_bad_body(client_a):
    body = client_a.post("/v1/my-models/validate-hf",
                         json={"hf_model_id": "not a repo id"}).json()
    assert body["supported"] is False
    err = error_of(client_a.post("/v1/my-models/validate-hf", json={}), 400)
    assert err["param"] == "hf_model_id"
    err = error_of(client_a.post("/v1/my-models/validate-hf", content=b"{not json",
                                 headers={"content-type": "application/json"}), 400)
    assert err["code"] == "invalid_request"


def test_import_unknown_validation_is_404(client_a):
    err = error_of(client_a.post("/v1/my-models/import-hf",
                                 json={"validation_id": "val_nope"}), 404)
    assert err["code"] == "validation_not_found" and err["param"] == "validation_id"


def test_import_unsupported_validation_is_400(client_a):
    v = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": "nobody/nothing"}).json()
    err = error_of(client_a.post("/v1/my-models/import-hf",
                                 json={"validation_id": v["validation_id"]}), 400)
    assert err["code"] == "model_not_supported"


def test_import_other_execution_mode_is_400(client_a):
    v = client_a.post("/v1/my-models/validate-hf",
                      json={"hf_model_id": "tessera/tiny-flux"}).json()
    err = error_of(client_a.post("/v1/my-models/import-hf", json={
        "validation_id": v["validation_id"], "execution_mode": "dedicated"}), 400)
    assert err["param"] == "execution_mode"


def test_license_acceptance_flow(client_a, noncommercial_flux_dir):
    v = client_a.post("/v1/my-models/validate-hf",
                      json={"hf_model_id": str(noncommercial_flux_dir)}).json()
    assert v["supported"] and v["license"] == "flux-1-dev-non-commercial-license"
    assert v["requires_license_acceptance"] is True
    err = error_of(client_a.post("/v1/my-models/import-hf",
                                 json={"validation_id": v["validation_id"]}), 400)
    assert err["code"] == "license_acceptance_required" and err["param"] == "accepted_license"
    r = client_a.post("/v1/my-models/import-hf",
                      json={"validation_id": v["validation_id"], "accepted_license": True})
    assert r.status_code == 201
    model = r.json()
    assert model["id"].startswith("tm_") and model["owned_by"] == TENANT_A
    assert model["license"] == "flux-1-dev-non-commercial-license"


def test_validation_of_another_tenant_is_404(client_a, client_b):
    v = client_a.post("/v1/my-models/validate-hf",
                      json={"hf_model_id": "tessera/tiny-flux"}).json()
    err = error_of(client_b.post("/v1/my-models/import-hf",
                                 json={"validation_id": v["validation_id"]}), 404)
    assert err["code"] == "validation_not_found"


def test_models_list_catalog_and_imports(client_a, client_b, tiny_flux_a):
    ids_a = [m["id"] for m in client_a.get("/v1/models").json()["data"]]
    ids_b = [m["id"] for m in client_b.get("/v1/models").json()["data"]]
    assert "black-forest-labs/FLUX.1-schnell" in ids_a and "tessera/tiny-flux" in ids_a
    assert tiny_flux_a in ids_a and tiny_flux_a not in ids_b
    models = {m["id"]: m for m in client_a.get("/v1/models").json()["data"]}
    schnell = models["black-forest-labs/FLUX.1-schnell"]
    assert schnell["parameters"]["num_inference_steps"] == 4
    assert schnell["parameters"]["guidance_scale"] is None
    assert schnell["license"] == "apache-2.0" and schnell["pricing"]["per_image"] == 0.0054
    assert models["black-forest-labs/FLUX.1-dev"]["requires_license_acceptance"] is True
    t2i = client_a.get("/v1/models", params={"task": "text-to-image"}).json()["data"]
    assert tiny_flux_a in [m["id"] for m in t2i]
    assert client_a.get("/v1/models", params={"task": "no-such-task"}).json()["data"] == []


# ---------------------------------------------------------------- generate, poll, download


def test_generation_flow_returns_png_of_requested_size(client_a, tiny_flux_a):
    started = time.time()
    r = client_a.post("/v1/images/generations", json={
        "model": tiny_flux_a, "prompt": "a lighthouse at dusk", "size": "96x64", "seed": 42})
    assert r.status_code == 202
    created = r.json()
    assert created["status"] == "queued" and created["task_id"].startswith("task_")
    assert time.time() - started < 5  # the 202 does not wait for the model
    task = wait_task(client_a, created["task_id"])
    assert task["status"] == "completed", task
    assert [h["status"] for h in task["history"]] == ["queued", "in_progress", "completed"]
    assert task["created_at"] <= task["started_at"] <= task["completed_at"]
    result = task["result"]
    assert len(result["data"]) == 1 and result["data"][0]["seed"] == 42
    image = Image.open(io.BytesIO(download(result["data"][0]["url"])))
    assert image.format == "PNG" and image.size == (96, 64)
    usage = result["usage"]
    assert usage["images"] == 1 and usage["output_tokens"] == (96 // 16) * (64 // 16)
    assert usage["cost"] == pytest.approx(usage["images"] * 0.01)
    assert usage["runtime_ms"] > 0


def test_same_seed_same_bytes_other_seed_other_bytes(client_a, tiny_flux_a):
    def png(seed):
        task = generate(client_a, tiny_flux_a, size="64x64", seed=seed)
        return download(task["result"]["data"][0]["url"])

    first, second, other = png(1234), png(1234), png(1235)
    assert first == second
    assert first != other


def test_n_images_each_with_its_seed_and_random_seed(client_a, tiny_flux_a):
    task = generate(client_a, tiny_flux_a, size="64x64", n=2, seed=-1)
    seeds = [d["seed"] for d in task["result"]["data"]]
    assert len(seeds) == 2 and seeds[1] == seeds[0] + 1
    assert task["result"]["usage"]["images"] == 2
    again = generate(client_a, tiny_flux_a, size="64x64", n=2, seed=seeds[0])
    assert [d["seed"] for d in again["result"]["data"]] == seeds
    for first, second in zip(task["result"]["data"], again["result"]["data"], strict=True):
        assert download(first["url"]) == download(second["url"])


def test_size_rounding_is_reported(client_a, tiny_flux_a):
    r = client_a.post("/v1/images/generations", json={
        "model": tiny_flux_a, "prompt": "p", "width": 100, "height": 70})
    assert r.status_code == 202
    assert any("100x70 to 96x64" in w for w in r.json()["warnings"])
    task = wait_task(client_a, r.json()["task_id"])
    assert task["request"]["width"] == 96 and task["request"]["height"] == 64
    image = Image.open(io.BytesIO(download(task["result"]["data"][0]["url"])))
    assert image.size == (96, 64)


def test_formats_and_b64(client_a, tiny_flux_a):
    task = generate(client_a, tiny_flux_a, size="64x64", output_format="jpeg",
                    response_format="b64_json", seed=5)
    item = task["result"]["data"][0]
    raw = base64.b64decode(item["b64_json"])
    assert Image.open(io.BytesIO(raw)).format == "JPEG" and item["content_type"] == "image/jpeg"
    assert download(item["url"]) == raw
    task = generate(client_a, tiny_flux_a, size="64x64", output_format="webp")
    assert Image.open(io.BytesIO(download(task["result"]["data"][0]["url"]))).format == "WEBP"


@pytest.mark.parametrize("fields, param", [
    ({"n": 5}, "n"),
    ({"n": 0}, "n"),
    ({"size": "big"}, "size"),
    ({"size": "4096x4096"}, "size"),
    ({"size": "16x16"}, "size"),
    ({"size": "64x64", "width": 64, "height": 64}, None),
    ({"width": 64}, None),
    ({"num_inference_steps": 500}, "num_inference_steps"),
    ({"guidance_scale": 50}, "guidance_scale"),
    ({"negative_prompt": "blurry"}, "negative_prompt"),
    ({"output_format": "gif"}, "output_format"),
    ({"seed": 2**40}, "seed"),
    ({"steps": 4}, "steps"),
    ({"prompt": "   "}, "prompt"),
])
def test_bad_generation_requests_are_400(client_a, tiny_flux_a, fields, param):
    err = error_of(client_a.post("/v1/images/generations",
                                 json={"model": tiny_flux_a, "prompt": "p", **fields}), 400)
    assert err["param"] == param, err
    assert err["message"]


def test_unknown_model_is_404(client_a):
    err = error_of(client_a.post("/v1/images/generations",
                                 json={"model": "tm_nope_0000", "prompt": "p"}), 404)
    assert err["code"] == "model_not_found" and err["param"] == "model"


def test_unknown_task_and_route_are_404_in_one_shape(client_a):
    assert error_of(client_a.get("/v1/tasks/task_nope"), 404)["code"] == "task_not_found"
    assert error_of(client_a.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert error_of(client_a.delete("/v1/models"), 405)["code"] == "method_not_allowed"


def test_tenant_isolation(client_a, client_b, tiny_flux_a):
    r = client_a.post("/v1/images/generations",
                      json={"model": tiny_flux_a, "prompt": "p", "size": "64x64"})
    task_id = r.json()["task_id"]
    err = error_of(client_b.post("/v1/images/generations",
                                 json={"model": tiny_flux_a, "prompt": "p"}), 404)
    assert err["code"] == "model_not_found"
    assert error_of(client_b.get(f"/v1/tasks/{task_id}"), 404)["code"] == "task_not_found"
    assert wait_task(client_a, task_id)["status"] == "completed"


def test_file_links_are_signed(client_a, tiny_flux_a):
    task = generate(client_a, tiny_flux_a, size="64x64")
    url = httpx.URL(task["result"]["data"][0]["url"])
    tampered = url.copy_set_param("signature", "0" * 64)
    assert error_of(httpx.get(tampered), 403)["code"] == "invalid_signature"
    expired = url.copy_set_param("expires", "1000")
    assert error_of(httpx.get(expired), 403)["code"] == "invalid_signature"
    other_key = str(url).replace("/0.png", "/1.png")
    assert httpx.get(other_key).status_code == 403


# ---------------------------------------------------------------- checkpoints from disk and cache


def test_checkpoint_from_local_directory(client_a, local_flux_dir):
    model = import_model(client_a, str(local_flux_dir))
    task = generate(client_a, model, size="64x80", seed=3)
    assert task["status"] == "completed", task
    image = Image.open(io.BytesIO(download(task["result"]["data"][0]["url"])))
    assert image.size == (64, 80)


def test_checkpoint_from_hf_cache_by_repo_id(client_a, cached_repo_id):
    model = import_model(client_a, cached_repo_id)
    task = generate(client_a, model, size="64x64", seed=3)
    assert task["status"] == "completed", task


def test_failed_generation_marks_task_failed_with_reason(client_a, corrupt_flux_dir):
    model = import_model(client_a, str(corrupt_flux_dir))
    r = client_a.post("/v1/images/generations",
                      json={"model": model, "prompt": "p", "size": "64x64"})
    assert r.status_code == 202
    task = wait_task(client_a, r.json()["task_id"])
    assert task["status"] == "failed" and task["result"] is None
    assert task["error"]["code"] == "generation_failed" and task["error"]["message"]
    # the service keeps serving after a failure
    with_tiny = import_model(client_a, "tessera/tiny-flux")
    assert generate(client_a, with_tiny, size="64x64")["status"] == "completed"


def test_uploads_on_local_store(client_a, client_b):
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    data = png.getvalue()
    up = client_a.post("/v1/uploads", json={"content_type": "image/png", "size": len(data)})
    assert up.status_code == 201
    up = up.json()
    assert "/v1/files/" in up["upload_url"]
    put = httpx.put(up["upload_url"], content=data, headers=up["headers"])
    assert put.status_code == 200, put.text
    info = client_a.get(f"/v1/uploads/{up['upload_id']}").json()
    assert info["size"] == len(data) and info["content_type"] == "image/png"
    assert error_of(client_b.get(f"/v1/uploads/{up['upload_id']}"), 404)["code"] == \
        "upload_not_found"
    # the PUT link cannot be used to read, and a GET link cannot be forged from it
    assert httpx.get(up["upload_url"]).status_code == 403
