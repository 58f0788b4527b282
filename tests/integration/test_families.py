"""Every family end to end on its tiny checkpoint, and the edits API."""

from __future__ import annotations

import base64
import http.server
import io
import threading

import httpx
import pytest
from PIL import Image

from deployments.registry import FAMILIES
from tests.support.api import download, error_of, import_model, wait_task
from tests.support.families import family_param


def png_b64(size=(80, 64), color=(200, 40, 40), mode="RGB") -> str:
    buf = io.BytesIO()
    image = Image.new(mode, size, color)
    if mode == "RGB":  # a gradient, so inputs carry structure
        for x in range(size[0]):
            image.putpixel((x, size[1] // 2), (x * 3 % 256, 100, 200))
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def mask_b64(size=(40, 32)) -> str:
    buf = io.BytesIO()
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    mask.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def models(client_a):
    """tm_* ids of every family's tiny checkpoint, imported through the API."""
    cache: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in cache:
            cache[family] = import_model(client_a, f"tessera/tiny-{family}")
        return cache[family]

    return get


def submit(client, path, body) -> dict:
    r = client.post(path, json=body)
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task_id"])
    assert task["status"] == "completed", task
    return task


def image_of(task, index=0) -> Image.Image:
    return Image.open(io.BytesIO(download(task["result"]["data"][index]["url"])))


@pytest.mark.parametrize("family", [family_param(n) for n in FAMILIES])
def test_family_end_to_end(client_a, models, family):
    spec = FAMILIES[family]
    v = client_a.post("/v1/my-models/validate-hf",
                      json={"hf_model_id": f"tessera/tiny-{family}"}).json()
    assert v["supported"], v
    assert v["family"] == family and v["pipeline_class"] in spec.pipeline_classes
    assert v["tasks"] == spec.tasks
    model = models(family)
    tasks = spec.tasks
    if "text-to-image" in tasks:
        task = submit(client_a, "/v1/images/generations",
                      {"model": model, "prompt": "a red fox", "size": "96x64", "seed": 1})
        assert image_of(task).size == (96, 64)
    if "edit" in tasks:
        task = submit(client_a, "/v1/images/edits", {
            "model": model, "prompt": "make it blue", "image": png_b64(), "seed": 2})
        assert task["request"]["task"] == "edit"
        made = image_of(task).size
        assert made == (task["result"]["width"], task["result"]["height"])
        if family != "longcat-edit":  # LongCat picks its own ~1 MP output size
            assert made == (80, 64)  # the input's size by default
    if "image-to-image" in tasks and "edit" not in tasks:
        task = submit(client_a, "/v1/images/edits", {
            "model": model, "prompt": "watercolour", "image": png_b64(), "strength": 0.6,
            "seed": 3})
        assert task["request"]["task"] == "image-to-image"
        assert task["request"]["strength"] == 0.6
        assert image_of(task).size == (80, 64)
    if "upscale" in tasks:
        task = submit(client_a, "/v1/images/upscale", {"model": model, "image": png_b64(),
                                                        "seed": 5})
        factor = v["parameters"]["upscale_factor"]
        assert task["request"]["task"] == "upscale" and task["request"]["scale"] == factor
        assert image_of(task).size == (80 * factor, 64 * factor)
    if "inpaint" in tasks:
        r = client_a.post("/v1/images/edits", json={
            "model": model, "prompt": "a window", "image": png_b64(), "mask_image": mask_b64(),
            "seed": 4})
        assert r.status_code == 202, r.text
        assert "mask_image resized from 40x32 to 80x64" in r.json()["warnings"]
        task = wait_task(client_a, r.json()["task_id"])
        assert task["status"] == "completed", task
        assert task["request"]["task"] == "inpaint" and image_of(task).size == (80, 64)


def test_flux2_takes_several_reference_images(client_a, models):
    model = models("flux2")
    task = submit(client_a, "/v1/images/edits", {
        "model": model, "prompt": "combine them", "size": "64x64",
        "image": [png_b64((64, 64)), {"b64_json": png_b64((96, 64), (10, 200, 10))}]})
    assert image_of(task).size == (64, 64)
    err = error_of(client_a.post("/v1/images/edits", json={
        "model": models("flux-kontext"), "prompt": "p",
        "image": [png_b64(), png_b64()]}), 400)
    assert err["param"] == "image"


def test_models_filter_lists_what_can_edit(client_a):
    data = client_a.get("/v1/models", params={"task": "image-to-image"}).json()["data"]
    ids = {m["id"] for m in data}
    assert {"tessera/tiny-flux-kontext", "tessera/tiny-flux-fill", "tessera/tiny-sdxl",
            "black-forest-labs/FLUX.1-Kontext-dev"} <= ids
    assert "tessera/tiny-pixart-sigma" not in ids and "tessera/tiny-hunyuan-image" not in ids
    assert "tencent/HunyuanImage-3.0" not in ids


def test_catalog_prices_and_licences(client_a):
    models = {m["id"]: m for m in client_a.get("/v1/models").json()["data"]}
    assert models["black-forest-labs/FLUX.1-schnell"]["pricing"]["per_image"] == 0.0054
    assert models["black-forest-labs/FLUX.1-dev"]["pricing"]["per_image"] == 0.045
    assert models["stabilityai/stable-diffusion-3.5-large"]["pricing"]["per_image"] == 0.045
    assert models["stabilityai/stable-diffusion-xl-base-1.0"]["pricing"]["per_image"] == 0.009
    assert models["PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"]["pricing"]["per_image"] == 0.009
    assert models["Qwen/Qwen-Image"]["pricing"]["per_image"] == 0.0324
    assert models["Qwen/Qwen-Image-Edit"]["tasks"] == ["edit"]
    assert models["black-forest-labs/FLUX.1-Kontext-dev"]["requires_license_acceptance"]
    assert models["Tongyi-MAI/Z-Image-Turbo"]["parameters"]["guidance_scale"] is None
    assert models["stabilityai/stable-diffusion-xl-base-1.0"]["parameters"]["negative_prompt"]


def test_hunyuan_image_3_is_refused_precisely(client_a):
    v = client_a.post("/v1/my-models/validate-hf",
                      json={"hf_model_id": "tencent/HunyuanImage-3.0"}).json()
    assert v["supported"] is False
    assert "not a diffusers pipeline" in v["errors"][0] and "2.1" in v["errors"][0]


# ---------------------------------------------------------------- routing and bad input


def test_capability_routing_errors(client_a, models):
    # an edit-only model on /generations names /v1/images/edits
    err = error_of(client_a.post("/v1/images/generations", json={
        "model": models("flux-kontext"), "prompt": "p"}), 400)
    assert "/v1/images/edits" in err["message"] and err["code"] == "unsupported_task"
    # a text-to-image-only model on /edits
    err = error_of(client_a.post("/v1/images/edits", json={
        "model": models("pixart-sigma"), "prompt": "p", "image": png_b64()}), 400)
    assert err["code"] == "unsupported_task"
    # a mask for a model that cannot inpaint
    err = error_of(client_a.post("/v1/images/edits", json={
        "model": models("z-image"), "prompt": "p", "image": png_b64(),
        "mask_image": mask_b64()}), 400)
    assert err["param"] == "mask_image"
    # an inpainting-only model without a mask
    err = error_of(client_a.post("/v1/images/edits", json={
        "model": models("flux-fill"), "prompt": "p", "image": png_b64()}), 400)
    assert err["param"] == "mask_image"


@pytest.mark.parametrize("image, status, param", [
    ("not base64 at all!", 400, "image"),
    (base64.b64encode(b"plain text, not an image").decode(), 400, "image"),
    ("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\ntruncated").decode(),
     400, "image"),
    (base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 1_100_000).decode(), 413, "image"),
    (png_b64((3000, 3000), (0, 0, 0)), 413, "image"),  # 9 MP, over the 4 MP guard
    ({"upload_id": "upl_nope"}, 404, "image"),
    ({"image_url": "ftp://example.org/a.png"}, 400, "image"),
    ({"image_url": "x", "upload_id": "y"}, 400, "image"),
])
def test_bad_edit_inputs(client_a, models, image, status, param):
    before = client_a.get("/v1/tasks").json()["data"]
    err = error_of(client_a.post("/v1/images/edits", json={
        "model": models("sdxl"), "prompt": "p", "image": image}), status)
    assert err["param"] == param or (err["param"] or "").startswith(param), err
    after = client_a.get("/v1/tasks").json()["data"]
    assert [t["id"] for t in after] == [t["id"] for t in before]  # no task was created


def test_no_task_is_left_unfinished(client_a):
    for task in client_a.get("/v1/tasks", params={"limit": 500}).json()["data"]:
        if task["status"] not in ("completed", "failed"):
            assert wait_task(client_a, task["id"])["status"] in ("completed", "failed")


def test_edit_from_upload_and_from_url(client_a, client_b, models):
    data = base64.b64decode(png_b64((64, 64)))
    up = client_a.post("/v1/uploads", json={"content_type": "image/png",
                                            "size": len(data)}).json()
    assert httpx.put(up["upload_url"], content=data, headers=up["headers"]).status_code == 200
    task = submit(client_a, "/v1/images/edits", {
        "model": models("sdxl"), "prompt": "p", "image": up["upload_id"]})
    assert image_of(task).size == (64, 64)
    # another tenant cannot use it, even with a model of its own
    model_b = import_model(client_b, "tessera/tiny-sdxl")
    err = error_of(client_b.post("/v1/images/edits", json={
        "model": model_b, "prompt": "p", "image": {"upload_id": up["upload_id"]}}), 404)
    assert err["code"] == "upload_not_found"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/input.png"
        task = submit(client_a, "/v1/images/edits", {
            "model": models("sdxl"), "prompt": "p", "image": {"image_url": url}})
        assert image_of(task).size == (64, 64)
    finally:
        server.shutdown()


def cache_repo(hf_home, repo_id: str, source_dir=None, files: dict | None = None) -> None:
    """Lay out a repo in the Hugging Face cache as hf_hub_download leaves it."""
    import shutil

    revision = "0" * 39 + "2"
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    if source_dir is not None:
        shutil.copytree(source_dir, snapshot)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {}).items():
        (snapshot / name).write_bytes(data)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)


def test_srpo_transformer_runs_on_the_flux_dev_pipeline(client_a, hf_home, local_flux_dir):
    """tencent/SRPO ships transformer weights only; they load onto FLUX.1-dev's pipeline."""
    import torch
    from safetensors.torch import load_file, save_file

    base_weights = load_file(str(local_flux_dir / "transformer" /
                                 "diffusion_pytorch_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    tuned = {k: v + 0.05 * torch.randn(v.shape, generator=generator)
             for k, v in base_weights.items()}
    tmp = hf_home / "srpo.safetensors"
    save_file(tuned, str(tmp))
    cache_repo(hf_home, "black-forest-labs/FLUX.1-dev", source_dir=local_flux_dir)
    cache_repo(hf_home, "tencent/SRPO",
               files={"diffusion_pytorch_model.safetensors": tmp.read_bytes()})

    v = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": "tencent/SRPO"}).json()
    assert v["supported"], v
    assert v["family"] == "flux" and v["requires_license_acceptance"]
    assert any("FLUX.1-dev pipeline" in w for w in v["warnings"])
    srpo = import_model(client_a, "tencent/SRPO", accepted_license=True)
    dev = import_model(client_a, "black-forest-labs/FLUX.1-dev", accepted_license=True)
    body = {"prompt": "a red fox", "size": "64x64", "seed": 9}
    srpo_png = download(submit(client_a, "/v1/images/generations",
                               {"model": srpo, **body})["result"]["data"][0]["url"])
    dev_png = download(submit(client_a, "/v1/images/generations",
                              {"model": dev, **body})["result"]["data"][0]["url"])
    assert srpo_png != dev_png  # the fine-tuned transformer was really used


def test_longcat_tiny_components_run_the_real_pipeline():
    """The LongCat tiny builder's models, run through LongCatImageEditPipeline in-process.

    Its Qwen2VLProcessor needs torchvision to be built at all; the pipeline uses only the
    processor's image processor, so a holder carries that one here.
    """
    from diffusers import LongCatImageEditPipeline
    from transformers import Qwen2VLImageProcessor

    from deployments.calls import Job, PipelineCalls
    from deployments.families.longcat import SPEC, tiny_components
    from serve_app.core.types import GenerateParams, GenerateRequest

    class Holder:
        image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)

    pipe = LongCatImageEditPipeline(**tiny_components(), text_processor=Holder())
    pipe.set_progress_bar_config(disable=True)
    params = GenerateParams(task="edit", prompt="blue", negative_prompt="x", width=64,
                            height=48, num_inference_steps=2, guidance_scale=4.5, seeds=[1, 2])
    request = GenerateRequest(task_id="t", tenant="a", model="m", created_at=0, params=params)
    source = Image.new("RGB", (64, 48), (200, 30, 30))
    images = PipelineCalls(SPEC, 4, "cpu", batch_invariant=False).run(
        pipe, [Job(request, None, [source])])
    assert len(images) == 2 and images[0].size == images[1].size
    assert images[0].tobytes() != images[1].tobytes()  # one generator per image
