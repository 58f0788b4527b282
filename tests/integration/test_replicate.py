"""Replicate's own Python client (1.0.x), unchanged but for its base URL and key, against
Tessera over HTTPS (`SSL_CERT_FILE` trusts the test's certificate)."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.support.api import KEY_A, KEY_B, TENANT_A, import_model

TINY = "tessera/tiny-flux"


@pytest.fixture(scope="module")
def replicate_a(tls_service):
    import replicate

    return replicate.Client(api_token=KEY_A, base_url=f"{tls_service.base_url}/replicate")


@pytest.fixture(scope="module")
def replicate_b(tls_service):
    import replicate

    return replicate.Client(api_token=KEY_B, base_url=f"{tls_service.base_url}/replicate")


def image_of(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_run_gives_file_outputs_that_read_the_images(replicate_a):
    from replicate.helpers import FileOutput

    out = replicate_a.run(TINY, input={"prompt": "a lighthouse", "aspect_ratio": "16:9",
                                       "num_outputs": 2, "num_inference_steps": 2,
                                       "output_format": "png", "seed": 5})
    assert len(out) == 2 and all(isinstance(o, FileOutput) for o in out)
    first, second = (image_of(o.read()) for o in out)
    assert first.format == "PNG" and first.size == (336, 192)  # 16:9 at the model's area
    assert first.tobytes() != second.tobytes()  # seeds 5 and 6
    webp = replicate_a.run(TINY, input={"prompt": "a lighthouse", "num_inference_steps": 2})
    assert image_of(webp[0].read()).format == "WEBP"  # Replicate's default output_format


def test_predictions_are_created_read_cancelled_and_listed(replicate_a, tls_service):
    made = replicate_a.predictions.create(model=TINY, input={"prompt": "a fox",
                                                             "num_inference_steps": 3})
    assert made.status in ("starting", "processing") and made.model == TINY
    assert made.urls["get"].endswith(f"/replicate/v1/predictions/{made.id}")
    made.wait()
    assert made.status == "succeeded" and len(made.output) == 1
    assert made.metrics["predict_time"] > 0 and made.progress.percentage == 1.0
    assert made.input == {"prompt": "a fox", "num_inference_steps": 3}
    slow = replicate_a.predictions.create(model=TINY, input={
        "prompt": "a slow fox", "width": 768, "height": 768, "num_inference_steps": 50})
    slow.cancel()
    assert slow.status == "canceled"
    slow.reload()
    assert slow.status == "canceled" and slow.output is None
    ended = replicate_a.predictions.cancel(made.id)  # already ended: answered as it is
    assert ended.status == "succeeded"
    listed = [p.id for p in replicate_a.predictions.list()]
    assert listed[:2] == [slow.id, made.id]  # newest first
    with tls_service.client(KEY_A) as client:  # the one submit path: a native task too
        assert client.get(f"/v1/tasks/{made.id}").json()["status"] == "completed"


def test_a_local_file_input_goes_through_files(replicate_a, replicate_b, tmp_path):
    from replicate.exceptions import ReplicateError

    path = tmp_path / "input.png"
    Image.new("RGB", (160, 112), (200, 40, 40)).save(path)
    with open(path, "rb") as f:
        out = replicate_a.run(TINY, input={"prompt": "make it blue", "image": f,
                                           "prompt_strength": 0.6, "num_inference_steps": 4,
                                           "output_format": "png"})
    assert image_of(out[0].read()).size == (160, 112)  # the input's size
    with open(path, "rb") as f:
        uploaded = replicate_a.files.create(f, metadata={"purpose": "test"})
    assert uploaded.size == path.stat().st_size and uploaded.metadata == {"purpose": "test"}
    assert replicate_a.files.get(uploaded.id).checksums == uploaded.checksums
    with pytest.raises(ReplicateError) as other:  # not another tenant's
        replicate_b.files.get(uploaded.id)
    assert other.value.status == 404
    with pytest.raises(ReplicateError) as named:  # nor as another tenant's input
        replicate_b.run(TINY, input={"prompt": "x", "image": uploaded.urls["get"]})
    assert named.value.status == 404
    replicate_a.files.delete(uploaded.id)
    with pytest.raises(ReplicateError):
        replicate_a.files.get(uploaded.id)


def test_an_imported_model_by_tenant_and_id(replicate_a, replicate_b, tls_service):
    from replicate.exceptions import ReplicateError

    with tls_service.client(KEY_A) as client:
        model = import_model(client, TINY)
    assert replicate_a.accounts.current().username == TENANT_A
    name = f"{TENANT_A}/{model}"
    out = replicate_a.run(name, input={"prompt": "mine", "num_inference_steps": 2})
    assert out[0].read()
    version = replicate_a.models.get(name).latest_version
    out = replicate_a.run(f"{name}:{version.id}", input={"prompt": "pinned",
                                                        "num_inference_steps": 2})
    assert out[0].read()
    with pytest.raises(ReplicateError) as other:
        replicate_b.run(name, input={"prompt": "theirs"})
    assert other.value.status == 404


def test_models_show_their_own_parameters(replicate_a):
    model = replicate_a.models.get(TINY)
    assert model.owner == "tessera" and model.visibility == "public"
    schema = model.latest_version.openapi_schema["components"]["schemas"]["Input"]
    props = schema["properties"]
    assert props["num_inference_steps"]["default"] == 4  # the tiny model's own
    assert props["width"]["maximum"] == 1024 and "lora_weights" in props
    assert "negative_prompt" not in props  # FLUX takes none
    assert [v.id for v in model.versions.list()] == [
        model.latest_version.id]


def test_errors_are_problems_the_client_raises(replicate_a):
    from replicate.exceptions import ReplicateError

    with pytest.raises(ReplicateError) as unknown:
        replicate_a.run(TINY, input={"prompt": "x", "sharpness": 3, "num_inference_steps": 2})
    assert unknown.value.status == 422 and "sharpness" in unknown.value.detail
    with pytest.raises(ReplicateError) as missing:
        replicate_a.run("nobody/nothing", input={"prompt": "x"})
    assert missing.value.status == 404
    with pytest.raises(ReplicateError) as offline:  # a real checkpoint, not on this machine
        replicate_a.run("black-forest-labs/flux-schnell", input={"prompt": "x"})
    assert "cannot run here" in offline.value.detail


def test_a_wait_that_runs_out_says_starting(tls_service):
    with tls_service.client(KEY_A, Prefer="wait=1") as client:
        made = client.post("/replicate/v1/models/tessera/tiny-flux/predictions", json={
            "input": {"prompt": "slow", "width": 1024, "height": 1024,
                      "num_inference_steps": 50}})
        assert made.status_code == 201 and made.json()["status"] == "starting", made.text
        assert made.headers["Preference-Applied"] == "wait=1"
        client.post(f"/replicate/v1/predictions/{made.json()['id']}/cancel")


def test_another_tenants_prediction_is_not_found(replicate_a, replicate_b):
    from replicate.exceptions import ReplicateError

    made = replicate_a.predictions.create(model=TINY, input={"prompt": "mine"})
    for call in (replicate_b.predictions.get, replicate_b.predictions.cancel):
        with pytest.raises(ReplicateError) as other:
            call(made.id)
        assert other.value.status == 404
    assert made.id not in [p.id for p in replicate_b.predictions.list()]


def test_webhooks_are_predictions_signed_with_the_default_secret(replicate_a, receiver):
    from replicate.webhook import InvalidSignatureError, Webhooks

    hook = receiver()
    made = replicate_a.predictions.create(
        model=TINY, input={"prompt": "hooked", "num_inference_steps": 2}, webhook=hook.url,
        webhook_events_filter=["start", "completed"])
    hook.until(lambda r: any(b["status"] == "succeeded" for b in r.bodies()))
    received = [(headers, body.decode()) for headers, body in hook.requests]
    secret = replicate_a.webhooks.default.secret()
    bodies = hook.bodies()
    assert {b["id"] for b in bodies} == {made.id}
    assert [b["status"] for b in bodies] == ["processing", "succeeded"], bodies
    assert bodies[-1]["output"][0].startswith("https://")
    for headers, body in received:
        Webhooks.validate(headers=headers, body=body, secret=secret)  # raises if forged
    headers, body = received[-1]
    with pytest.raises(InvalidSignatureError):
        Webhooks.validate(headers=headers, body=body.replace("hooked", "forged"),
                          secret=secret)


def test_the_raw_api_takes_token_keys_and_pages_predictions(tls_service):
    with httpx.Client(base_url=f"{tls_service.base_url}/replicate",
                      headers={"Authorization": f"Token {KEY_A}"},
                      verify=tls_service.verify) as client:
        page = client.get("/v1/predictions").json()
        assert set(page) == {"previous", "next", "results"}
        assert client.get("/v1/predictions", params={"cursor": "nonsense"}).status_code == 422
