"""Control images, reference images and upscaling over HTTP, against the session's Tessera with
the tiny models: the tiny ControlNets (FLUX, SDXL, SD 3.5, Qwen-Image), the tiny FLUX Redux
prior and SDXL IP-Adapter, the tiny depth model, the tiny Swin2SR (x2) and SD x4 upscaler.
Every path runs the real diffusers and transformers classes with random weights."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image

from tests.support.api import KEY_A, KEY_B, download, error_of, import_model, wait_task
from tests.support.images import BLUE, RED, png_b64

FLUX, CONTROLNET = "tessera/tiny-flux", "tessera/tiny-flux-controlnet"
ASK = {"prompt": "a red fox", "size": "128x128", "seed": 7, "num_inference_steps": 2}


png = png_b64


def run(client, body: dict, route: str = "generations") -> tuple[dict, list[bytes]]:
    r = client.post(f"/v1/images/{route}", json=body)
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task_id"])
    assert task["status"] == "completed", task
    return task, [download(d["url"]) for d in task["result"]["data"]]


def image(client, model: str = FLUX, **fields) -> bytes:
    return run(client, {"model": model, **ASK, **fields})[1][0]


def control(path: str = CONTROLNET, img: str = RED, **fields) -> dict:
    return {"path": path, "image": img, **fields}


# ---------------------------------------------------------------- ControlNets


def test_a_controlnet_steers_the_image_by_its_control_image(client_a):
    base = image(client_a)
    task, red = run(client_a, {"model": FLUX, **ASK, "controlnets": [control()]})
    blue = image(client_a, controlnets=[control(img=BLUE)])
    assert len({base, red[0], blue}) == 3
    used = task["request"]["controlnets"]
    assert used == [{"path": CONTROLNET, "conditioning_scale": 1.0, "start": 0.0, "end": 1.0,
                     "preprocess": "none", "control_mode": None,
                     "image_sha256": used[0]["image_sha256"]}]
    # the same request again: the same bytes (the control image is cached by its hash)
    assert image(client_a, controlnets=[control()]) == red[0]


def test_scale_zero_gives_exactly_the_base_image(client_a):
    base = image(client_a)
    assert image(client_a, controlnets=[control(conditioning_scale=0)]) == base
    # two ControlNets, one at 0: the same as the other alone
    one = image(client_a, controlnets=[control(conditioning_scale=0.7)])
    assert image(client_a, controlnets=[control(img=BLUE, conditioning_scale=0),
                                        control(conditioning_scale=0.7)]) == one


def test_two_controlnets_and_a_step_window(client_a):
    one = image(client_a, controlnets=[control()])
    two = image(client_a, controlnets=[control(), control(img=BLUE, conditioning_scale=0.5)])
    late = image(client_a, controlnets=[control(start=0.5)])
    assert len({one, two, late}) == 3


@pytest.mark.parametrize("preprocess", ["canny", "depth"])
def test_preprocess_makes_edges_or_depth_of_the_control_image(client_a, preprocess):
    plain = image(client_a, controlnets=[control()])
    task, made = run(client_a, {"model": FLUX, **ASK,
                                "controlnets": [control(preprocess=preprocess)]})
    assert task["request"]["controlnets"][0]["preprocess"] == preprocess
    assert made[0] != plain


@pytest.mark.parametrize("family", ["sdxl", "sd3", "qwen-image"])
def test_each_family_runs_its_own_controlnets(client_a, family):
    model, path = f"tessera/tiny-{family}", f"tessera/tiny-{family}-controlnet"
    base = image(client_a, model)
    steered = image(client_a, model, controlnets=[control(path)])
    assert steered != base
    assert image(client_a, model, controlnets=[control(path, conditioning_scale=0)]) == base
    # the same request twice: the same bytes (SD 3.5's pipeline samples the control latents
    # from torch's global generator, which the replica seeds from the task's seed)
    assert image(client_a, model, controlnets=[control(path)]) == steered


def test_a_controlnet_of_another_family_is_refused_before_queueing(client_a):
    before = len(client_a.get("/v1/tasks").json()["data"])
    r = client_a.post("/v1/images/generations", json={
        "model": FLUX, **ASK, "controlnets": [control("tessera/tiny-sdxl-controlnet")]})
    err = error_of(r, 400)
    assert err["code"] == "controlnet_incompatible"
    assert err["param"] == "controlnets[0].path"
    assert "Stable Diffusion XL" in err["message"] and "FLUX" in err["message"]
    assert len(client_a.get("/v1/tasks").json()["data"]) == before  # nothing was queued


def test_families_without_controlnets_or_references_name_the_model(client_a):
    model = "tessera/tiny-pixart-sigma"
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": model, **ASK, "controlnets": [control()]}), 400)
    assert err["param"] == "controlnets" and model in err["message"]
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": model, **ASK, "reference_images": [{"image": RED}]}), 400)
    assert err["param"] == "reference_images" and model in err["message"]


@pytest.mark.parametrize("body, param", [
    ({"controlnets": [control()] * 3}, "controlnets"),
    ({"controlnets": [control(conditioning_scale=2.5)]}, "controlnets.0.conditioning_scale"),
    ({"controlnets": [control(start=0.6, end=0.4)]}, "controlnets.0"),
    ({"controlnets": [control(preprocess="sobel")]}, "controlnets.0.preprocess"),
    ({"controlnets": [control(img="not base64!")]}, "controlnets[0].image"),
    ({"controlnets": [control("../../etc/passwd")]}, "controlnets[0].path"),
    ({"controlnets": [control("nobody/not-cached")]}, "controlnets[0].path"),
    ({"controlnets": [control(control_mode="scribble")]}, "controlnets[0].control_mode"),
    ({"reference_images": [{"image": RED}] * 5}, "reference_images"),
    ({"reference_images": [{"image": RED, "scale": -1}]}, "reference_images.0.scale"),
])
def test_bad_conditioning_is_a_clear_4xx(client_a, body, param):
    r = client_a.post("/v1/images/generations", json={"model": FLUX, **ASK, **body})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["param"] == param, r.text


def test_an_imported_controlnet_is_its_tenants_alone(client_a, client_b):
    r = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": CONTROLNET})
    v = r.json()
    assert v["supported"] and v["kind"] == "controlnet" and v["family"] == "flux", v
    assert v["size"] > 0 and v["tasks"] == [] and not v["supports_loras"]
    model_id = import_model(client_a, CONTROLNET)
    listed = {m["id"]: m for m in client_a.get("/v1/models").json()["data"]}
    assert listed[model_id]["kind"] == "controlnet" and listed[model_id]["tasks"] == []
    # named by its tm_ id: the same weights, the same bytes as by name
    assert image(client_a, controlnets=[control(model_id)]) == image(
        client_a, controlnets=[control()])
    # another tenant's ControlNet is not found, as any of its models
    err = error_of(client_b.post("/v1/images/generations", json={
        "model": FLUX, **ASK, "controlnets": [control(model_id)]}), 404)
    assert err["code"] == "model_not_found" and err["param"] == "controlnets[0].path"
    # a ControlNet is not a model to call
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": model_id, **ASK}), 400)
    assert err["param"] == "model" and "ControlNet" in err["message"]


def test_validate_hf_reads_controlnet_repositories(client_a, service, models_root, hf_home):
    """From the models directory and from the Hugging Face cache: the family from the config;
    pickle weights are refused, never loaded."""
    from deployments.helpers import ensure_helper

    built = ensure_helper(service.data_dir, "tessera/tiny-sdxl-controlnet")
    local = models_root / "sdxl-controlnet"
    shutil.copytree(built, local, dirs_exist_ok=True)
    v = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": str(local)}).json()
    assert v["supported"] and v["kind"] == "controlnet" and v["family"] == "sdxl", v
    assert v["pipeline_class"] == "ControlNetModel"
    model_id = import_model(client_a, str(local), accepted_license=True)  # no card: unknown
    # loaded from its directory: the same weights as the tiny SDXL ControlNet, the same bytes
    sdxl = "tessera/tiny-sdxl"
    assert image(client_a, sdxl, controlnets=[control(model_id)]) == image(
        client_a, sdxl, controlnets=[control("tessera/tiny-sdxl-controlnet")])
    # the built-in tiny ControlNets are refused on a real model
    real = import_model(client_a, str(local_sdxl(models_root)), accepted_license=True)
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": real, **ASK, "controlnets": [control("tessera/tiny-sdxl-controlnet")]}), 400)
    assert err["code"] == "controlnet_incompatible" and "tiny" in err["message"]

    pickled = models_root / "pickled-controlnet"
    pickled.mkdir(exist_ok=True)
    shutil.copy(built / "config.json", pickled / "config.json")
    (pickled / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not really")
    v = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": str(pickled)}).json()
    assert v["kind"] == "controlnet" and not v["supported"]
    assert any("pickle" in e for e in v["errors"]), v

    repo_id = "someone/flux-controlnet"
    hub_repo(hf_home, repo_id, ensure_helper(service.data_dir, CONTROLNET))
    v = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": repo_id}).json()
    assert v["supported"] and v["kind"] == "controlnet" and v["family"] == "flux", v


def local_sdxl(models_root):
    """A tiny SDXL checkpoint in the models directory: to Tessera, a real model."""
    from deployments.registry import FAMILIES

    path = models_root / "sdxl-local"
    if not (path / "model_index.json").exists():
        FAMILIES["sdxl"].build_tiny(str(path))
    return path


def test_a_controlnet_made_for_another_size_is_refused(client_a, service, hf_home, tmp_path):
    """The same class and family, other widths: refused before queueing, the widths named."""
    import json

    from deployments.helpers import ensure_helper

    built = ensure_helper(service.data_dir, CONTROLNET)
    config = json.loads((built / "config.json").read_text())
    (tmp_path / "wide").mkdir()
    (tmp_path / "wide" / "config.json").write_text(json.dumps(
        {**config, "joint_attention_dim": 4096, "pooled_projection_dim": 768}))
    hub_repo(hf_home, "someone/flux-dev-controlnet", tmp_path / "wide")
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": FLUX, **ASK, "controlnets": [control("someone/flux-dev-controlnet")]}), 400)
    assert err["code"] == "controlnet_incompatible"
    assert "joint_attention_dim 4096" in err["message"]


def hub_repo(hf_home, repo_id: str, source) -> None:
    """A repository laid out in the Hugging Face cache (the Hub is offline here)."""
    root = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(source, root / "snapshots" / ("0" * 40), dirs_exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text("0" * 40)


def test_a_union_controlnet_takes_its_control_mode(client_a, service, hf_home, tmp_path):
    """A FLUX union ControlNet (its config has num_mode) from the Hub cache: the mode goes to
    the pipeline (two modes, two images); it must be given, and within range."""
    import json

    import torch
    from diffusers import FluxControlNetModel

    from deployments.helpers import ensure_helper

    config = json.loads((ensure_helper(service.data_dir, CONTROLNET) / "config.json").read_text())
    torch.manual_seed(3)
    union = FluxControlNetModel.from_config({**config, "num_mode": 3})
    with torch.no_grad():
        for p in union.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)  # zero convolutions made to steer, as the tiny ones are
    union.save_pretrained(str(tmp_path / "union"), safe_serialization=True)
    hub_repo(hf_home, "someone/flux-union", tmp_path / "union")
    path = "someone/flux-union"
    zero = image(client_a, controlnets=[control(path, control_mode=0)])
    two = image(client_a, controlnets=[control(path, control_mode=2)])
    assert zero != two
    for mode, says in [(None, "is a union ControlNet"), (3, "is not a mode"),
                       ("canny", "is not a mode")]:
        err = error_of(client_a.post("/v1/images/generations", json={
            "model": FLUX, **ASK, "controlnets": [control(path, control_mode=mode)]}), 400)
        assert err["param"] == "controlnets[0].control_mode" and says in err["message"]
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": FLUX, **ASK, "controlnets": [control(control_mode=1)]}), 400)
    assert "not a union ControlNet" in err["message"]


# ---------------------------------------------------------------- reference images


@pytest.mark.parametrize("model", [FLUX, "tessera/tiny-sdxl"])
def test_a_reference_image_conditions_and_scale_zero_is_the_base(client_a, model):
    base = image(client_a, model)
    task, red = run(client_a, {"model": model, **ASK, "reference_images": [{"image": RED}]})
    blue = image(client_a, model, reference_images=[{"image": BLUE}])
    assert len({base, red[0], blue}) == 3
    assert task["request"]["reference_images"] == [
        {"scale": 1.0, "image_sha256": task["request"]["reference_images"][0]["image_sha256"]}]
    assert image(client_a, model, reference_images=[{"image": RED, "scale": 0}]) == base
    # and the model is itself again afterwards (SDXL's IP-Adapter is unloaded)
    assert image(client_a, model) == base


def test_several_reference_images(client_a):
    one = image(client_a, reference_images=[{"image": RED}])
    both = image(client_a, reference_images=[{"image": RED}, {"image": BLUE, "scale": 0.5}])
    assert one != both
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": "tessera/tiny-sdxl", **ASK,
        "reference_images": [{"image": RED}, {"image": BLUE, "scale": 0.5}]}), 400)
    assert err["param"] == "reference_images" and "same scale" in err["message"]


# ---------------------------------------------------------------- upscaling


def test_upscale_a_small_png_twice(client_a):
    small = png((30, 160, 90), size=(64, 48))
    task, [out] = run(client_a, {"model": "tessera/tiny-swin2sr", "image": small, "scale": 2},
                      route="upscale")
    assert Image.open(io.BytesIO(out)).size == (128, 96)
    result = task["result"]
    assert (result["width"], result["height"]) == (128, 96)
    assert result["usage"]["output_tokens"] == (128 // 16) * (96 // 16)
    assert task["request"]["task"] == "upscale" and task["request"]["scale"] == 2
    # the same input again: the same bytes
    assert run(client_a, {"model": "tessera/tiny-swin2sr", "image": small},
               route="upscale")[1][0] == out


def test_large_inputs_go_through_in_tiles(client_a):
    """300x201 is two tiles wide: the output is whole, the input's size times the factor,
    and its progress counted tiles."""
    task, [out] = run(client_a, {"model": "tessera/tiny-swin2sr",
                                 "image": png((90, 90, 200), size=(300, 201))}, route="upscale")
    assert Image.open(io.BytesIO(out)).size == (600, 402)


def test_the_diffusion_upscaler_is_x4_with_a_prompt(client_a):
    small = png((30, 160, 90), size=(40, 32))
    task, [out] = run(client_a, {"model": "tessera/tiny-sd-upscaler", "image": small,
                                 "prompt": "a green field", "seed": 3}, route="upscale")
    assert Image.open(io.BytesIO(out)).size == (160, 128)
    assert run(client_a, {"model": "tessera/tiny-sd-upscaler", "image": small,
                          "prompt": "a green field", "seed": 3}, route="upscale")[1][0] == out


def test_upscale_errors(client_a):
    up = "tessera/tiny-swin2sr"
    big = png((1, 2, 3), size=(1600, 1400), box=False)  # 2.24 MP: over the 2 MP cap
    err = error_of(client_a.post("/v1/images/upscale", json={"model": up, "image": big}), 413)
    assert err["code"] == "payload_too_large" and err["param"] == "image"
    err = error_of(client_a.post("/v1/images/upscale", json={
        "model": up, "image": RED, "scale": 4}), 400)
    assert err["param"] == "scale" and "x2" in err["message"]
    err = error_of(client_a.post("/v1/images/upscale", json={"model": FLUX, "image": RED}), 400)
    assert err["param"] == "model" and "upscale" in err["message"]
    err = error_of(client_a.post("/v1/images/generations", json={"model": up, **ASK}), 400)
    assert "/v1/images/upscale" in err["message"]


def test_upscalers_are_listed_by_task(client_a):
    listed = client_a.get("/v1/models", params={"task": "upscale"}).json()["data"]
    ids = {m["id"]: m for m in listed}
    assert {"tessera/tiny-swin2sr", "tessera/tiny-sd-upscaler",
            "caidas/swin2SR-classical-sr-x2-64",
            "stabilityai/stable-diffusion-x4-upscaler"} <= set(ids)
    assert all(m["tasks"] == ["upscale"] for m in listed)
    assert ids["tessera/tiny-swin2sr"]["parameters"]["upscale_factor"] == 2
    assert ids["caidas/swin2SR-classical-sr-x4-64"]["parameters"]["upscale_factor"] == 4


def test_an_upscale_waits_signs_webhooks_and_cancels_like_any_task(service, client_a, receiver):
    import time

    with service.client(KEY_A, Prefer="wait=60") as client:
        r = client.post("/v1/images/upscale", json={"model": "tessera/tiny-swin2sr",
                                                    "image": png((5, 5, 5), size=(32, 32))})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed"
        data = download(r.json()["result"]["data"][0]["url"])
        assert Image.open(io.BytesIO(data)).size == (64, 64)

    hook = receiver()
    r = client_a.post("/v1/images/upscale", json={
        "model": "tessera/tiny-swin2sr", "image": png((5, 5, 5), size=(32, 32)),
        "webhook": hook.url})
    assert r.status_code == 202, r.text
    task_id = r.json()["task_id"]
    hook.wait(1, timeout=60)
    (headers, _), = hook.requests
    (body,) = hook.bodies()
    assert body["id"] == task_id and body["status"] == "completed"
    assert body["request"]["task"] == "upscale"
    assert {"webhook-id", "webhook-signature"} <= set(headers)

    # a long upscale (the diffusion upscaler over many tiles), cancelled while it runs (by the
    # other tenant: tenant A's tasks all complete, which test_families checks)
    with service.client(KEY_B) as client_b:
        r = client_b.post("/v1/images/upscale", json={
            "model": "tessera/tiny-sd-upscaler", "image": png((9, 9, 9), size=(1024, 1024)),
            "num_inference_steps": 20})
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        deadline = time.time() + 60
        while client_b.get(f"/v1/tasks/{task_id}").json()["status"] == "queued":
            assert time.time() < deadline
            time.sleep(0.1)
        assert client_b.post(f"/v1/tasks/{task_id}/cancel").status_code == 200
        ended = wait_task(client_b, task_id)
    assert ended["status"] == "canceled", ended
