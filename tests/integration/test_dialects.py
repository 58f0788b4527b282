"""Existing clients, unchanged but for the base URL and key: the OpenAI SDK itself, and models
called by name."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from tests.support.api import KEY_A, download, error_of


@pytest.fixture(scope="module")
def openai_client(service):
    from openai import OpenAI

    return OpenAI(base_url=f"{service.base_url}/openai/v1", api_key=KEY_A, max_retries=0,
                  timeout=120)


def png(size=(64, 64), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_openai_sdk_generates(openai_client):
    raw = openai_client.images.with_raw_response.generate(
        model="tessera/tiny-flux", prompt="a red fox in the snow", size="128x128", n=2,
        quality="hd", style="vivid", user="someone",
        extra_body={"seed": 7, "num_inference_steps": 2})
    assert raw.headers["Tessera-Ignored-Parameters"] == "quality, style, user"
    result = raw.parse()
    assert len(result.data) == 2 and result.created > 0
    first = Image.open(io.BytesIO(download(result.data[0].url)))
    assert first.size == (128, 128)
    assert result.size == "128x128" and result.usage.output_tokens == 2 * 8 * 8
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens

    again = openai_client.images.generate(model="tiny-flux", prompt="a red fox in the snow",
                                          size="128x128", response_format="b64_json",
                                          extra_body={"seed": 7, "num_inference_steps": 2})
    assert again.data[0].url is None
    assert base64.b64decode(again.data[0].b64_json) == download(result.data[0].url)


def test_openai_sdk_edits_with_a_mask(openai_client):
    mask = io.BytesIO()
    m = Image.new("L", (64, 64), 0)
    m.paste(255, (16, 16, 48, 48))
    m.save(mask, format="PNG")
    result = openai_client.images.edit(
        model="tessera/tiny-flux", image=("in.png", png(), "image/png"),
        mask=("mask.png", mask.getvalue(), "image/png"), prompt="a blue square",
        size="64x64", extra_body={"num_inference_steps": 2})
    assert len(result.data) == 1
    assert Image.open(io.BytesIO(download(result.data[0].url))).size == (64, 64)
    assert result.usage.input_tokens_details.image_tokens == 16
    several = openai_client.images.edit(
        model="tiny-flux", image=[("a.png", png(), "image/png")], prompt="img2img",
        size="64x64", extra_body={"num_inference_steps": 2, "strength": 0.5})
    assert len(several.data) == 1


def test_openai_sdk_errors_and_models(openai_client):
    import openai

    with pytest.raises(openai.NotFoundError) as missing:
        openai_client.images.generate(model="no-such-model", prompt="x")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client.images.generate(model="tiny-flux", prompt="x", size="big")
    assert bad.value.body["param"] == "size" and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.PermissionDeniedError) as licence:
        openai_client.images.generate(model="black-forest-labs/FLUX.1-dev", prompt="x")
    assert licence.value.body["code"] == "license_acceptance_required"
    from openai import OpenAI

    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=str(openai_client.base_url), api_key="wrong",
               max_retries=0).models.list()

    ids = [m.id for m in openai_client.models.list().data]
    # only what can be called by that name now: schnell's weights cannot be fetched here
    # (HF_HUB_OFFLINE), FLUX.1-dev's licence was not accepted by the operator
    assert "tessera/tiny-flux" in ids and "tessera/tiny-qwen-image-edit" in ids
    assert "black-forest-labs/FLUX.1-schnell" not in ids
    assert "black-forest-labs/FLUX.1-dev" not in ids
    model = openai_client.models.retrieve("tessera/tiny-flux")
    assert model.id == "tessera/tiny-flux" and model.owned_by == "tessera"


def _torchvision() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


def test_models_by_name(client_a, client_b):
    # the built-in tiny FLUX by id and by short name, for every tenant, with no import
    for client, name in ((client_a, "tessera/tiny-flux"), (client_b, "TINY-FLUX")):
        r = client.post("/v1/images/generations", headers={"Prefer": "wait=60"},
                        json={"model": name, "prompt": "a fox", "size": "64x64"})
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        assert r.json()["model"] == "tessera/tiny-flux"
    # a catalog model whose licence needs acceptance: the import flow, or the operator
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": "FLUX.1-dev", "prompt": "x"}), 403)
    assert err["code"] == "license_acceptance_required" and "import-hf" in err["message"]
    models = {m["id"]: m for m in client_a.get("/v1/models").json()["data"]}
    schnell = models["black-forest-labs/FLUX.1-schnell"]
    assert not schnell["requires_license_acceptance"]
    # its weights are neither cached nor reachable here: not callable, and it says why
    assert not schnell["available"] and "HF_HUB_OFFLINE" in schnell["unavailable_reason"]
    dev = models["black-forest-labs/FLUX.1-dev"]
    assert dev["requires_license_acceptance"] and not dev["available"]
    assert "licence" in dev["unavailable_reason"]
    assert models["tessera/tiny-flux"]["available"]
    hunyuan3 = models["tencent/HunyuanImage-3.0"]
    assert not hunyuan3["available"] and "not a diffusers pipeline" in hunyuan3[
        "unavailable_reason"]
    if not _torchvision():
        qwen_edit = models["Qwen/Qwen-Image-Edit"]
        assert not qwen_edit["available"] and "torchvision" in qwen_edit["unavailable_reason"]
        err = error_of(client_a.post("/v1/images/edits", json={
            "model": "Qwen/Qwen-Image-Edit", "prompt": "x",
            "image": {"b64_json": base64.b64encode(png()).decode()}}), 400)
        assert err["code"] == "model_not_supported" and "torchvision" in err["message"]
    # schnell by name is refused at once with the reason its listing gives
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": "FLUX.1-schnell", "prompt": "x", "size": "64x64"}), 400)
    assert err["code"] == "model_not_supported" and "HF_HUB_OFFLINE" in err["message"]


def test_import_answer_carries_model_id_and_parel_model_id(client_a):
    r = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": "tessera/tiny-sdxl"})
    r = client_a.post("/v1/my-models/import-hf", json={
        "validation_id": r.json()["validation_id"], "execution_mode": "instant",
        "accepted_license": False})
    assert r.status_code == 201
    body = r.json()
    assert body["id"].startswith("tm_") and body["model_id"] == body["parel_model_id"] == body[
        "id"]
