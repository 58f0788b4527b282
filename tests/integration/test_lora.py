"""LoRA adapters over HTTP against a running Tessera, with real peft-made adapters on the tiny
FLUX pipeline: by Hub id (the built-in `tessera/tiny-flux-lora`), by URL (a server this test
starts on 127.0.0.1) and imported as a tenant's model."""

from __future__ import annotations

import io
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deployments.adapters.tiny import WEIGHTS
from tests.support.api import KEY_A, download, error_of, wait_task

BASE = "tessera/tiny-flux"
TINY_LORA = "tessera/tiny-flux-lora"
FIELDS = {"size": "128x128", "seed": 11, "num_inference_steps": 2}


class Files:
    """An HTTP server on 127.0.0.1 serving bytes by path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return f"http://127.0.0.1:{self.server.server_port}{path}"


@pytest.fixture(scope="module")
def files():
    served = Files()
    yield served
    served.server.shutdown()


@pytest.fixture(scope="module")
def adapters(service, client_a, files, tmp_path_factory):
    """URLs of the tiny FLUX LoRA (as the server built it) and of a second peft-made one."""
    from diffusers import DiffusionPipeline

    from deployments.adapters.tiny import build_tiny_lora

    r = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": TINY_LORA})
    assert r.status_code == 200 and r.json()["supported"], r.text
    first = (service.data_dir / "tiny" / "flux-lora" / WEIGHTS).read_bytes()
    pipe = DiffusionPipeline.from_pretrained(str(service.data_dir / "tiny" / "flux"))
    out = build_tiny_lora(pipe, "flux", tmp_path_factory.mktemp("lora-b"), seed=1)
    second = (out / WEIGHTS).read_bytes()
    sdxl = client_a.post("/v1/my-models/validate-hf",  # builds it, for the misfit tests
                         json={"hf_model_id": "tessera/tiny-sdxl-lora"})
    assert sdxl.status_code == 200, sdxl.text
    return {"a": files.url("/a.safetensors", first), "b": files.url("/b.safetensors", second),
            "first": first, "second": second}


def image_bytes(client, model: str = BASE, **fields) -> bytes:
    r = client.post("/v1/images/generations", json={"model": model, "prompt": "a red fox",
                                                     **FIELDS, **fields})
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task_id"])
    assert task["status"] == "completed", task
    return download(task["result"]["data"][0]["url"])


def submit(client, **fields) -> str:
    r = client.post("/v1/images/generations", json={"model": BASE, "prompt": "a red fox",
                                                     **FIELDS, **fields})
    assert r.status_code == 202, r.text
    return r.json()["task_id"]


def test_an_adapter_changes_the_image_and_scale_zero_gives_the_base(client_a, adapters):
    base = image_bytes(client_a)
    with_a = image_bytes(client_a, loras=[{"path": adapters["a"]}])
    assert with_a != base
    assert image_bytes(client_a, loras=[{"path": adapters["a"], "scale": 0}]) == base
    # by Hub id: the same file, the same bytes
    assert image_bytes(client_a, loras=[{"path": TINY_LORA, "scale": 1.0}]) == with_a
    task_id = submit(client_a, loras=[{"path": adapters["a"], "scale": 0.5}])
    task = wait_task(client_a, task_id)
    import hashlib

    assert task["request"]["loras"] == [{
        "path": adapters["a"], "scale": 0.5,
        "sha256": hashlib.sha256(adapters["first"]).hexdigest()}]


def test_switches_drift_nothing_and_two_adapters_compose(client_a, adapters):
    a, b = [{"path": adapters["a"]}], [{"path": adapters["b"]}]
    first = {"base": image_bytes(client_a), "a": image_bytes(client_a, loras=a),
             "b": image_bytes(client_a, loras=b)}
    assert len(set(first.values())) == 3
    for _ in range(3):
        for name, loras in (("a", a), ("base", []), ("b", b), ("a", a)):
            assert image_bytes(client_a, loras=loras) == first[name]
    both = image_bytes(client_a, loras=a + b)
    assert both not in first.values()
    assert image_bytes(client_a, loras=a + b) == both


def test_tasks_with_different_adapter_sets_in_flight_give_their_bytes_alone(client_a, adapters):
    sets = {"base": [], "a": [{"path": adapters["a"]}], "b": [{"path": adapters["b"]}],
            "ab": [{"path": adapters["a"]}, {"path": adapters["b"], "scale": -0.5}]}
    alone = {name: image_bytes(client_a, loras=loras) for name, loras in sets.items()}
    with ThreadPoolExecutor(len(sets) * 2) as pool:
        ids = {(name, i): pool.submit(submit, client_a, loras=loras)
               for name, loras in sets.items() for i in range(2)}
        ids = {k: f.result() for k, f in ids.items()}
    for (name, _), task_id in ids.items():
        task = wait_task(client_a, task_id)
        assert task["status"] == "completed", task
        assert download(task["result"]["data"][0]["url"]) == alone[name], name


def test_an_imported_lora_model_is_its_base_with_the_adapter(client_a, client_b, adapters):
    r = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": TINY_LORA})
    v = r.json()
    assert v["kind"] == "lora" and v["supported"], v
    assert v["base_model"] == BASE and v["family"] == "flux" and v["rank"] == 4
    assert v["target_modules"] and v["size"] == len(adapters["first"]) and len(v["sha256"]) == 64
    r = client_a.post("/v1/my-models/import-hf", json={"validation_id": v["validation_id"]})
    assert r.status_code == 201, r.text
    model = r.json()["id"]
    assert model.startswith("tm_")
    by_url = image_bytes(client_a, loras=[{"path": adapters["a"], "scale": 1.0}])
    assert image_bytes(client_a, model=model) == by_url
    assert image_bytes(client_a, model=model, lora_scale=0) == image_bytes(client_a)
    assert image_bytes(client_a, loras=[{"path": model}]) == by_url
    # the other tenant: 404 as a model and in loras
    other = client_b.post("/v1/images/generations", json={"model": model, "prompt": "x"})
    assert error_of(other, 404)["param"] == "model"
    other = client_b.post("/v1/images/generations", json={
        "model": BASE, "prompt": "x", "loras": [{"path": model}]})
    assert error_of(other, 404)["param"] == "loras[0].path"
    # a pipeline checkpoint stays a pipeline
    pipeline = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": BASE}).json()
    assert pipeline["kind"] == "pipeline" and pipeline["supports_loras"] is True


def test_a_base_model_named_in_the_request_wins_over_the_card(client_a, tiny_flux_a):
    r = client_a.post("/v1/my-models/validate-hf", json={
        "hf_model_id": TINY_LORA, "base_model": tiny_flux_a})
    assert r.json()["base_model"] == tiny_flux_a and r.json()["supported"], r.text
    r = client_a.post("/v1/my-models/validate-hf", json={
        "hf_model_id": TINY_LORA, "base_model": "tessera/tiny-sdxl"})
    body = r.json()
    assert body["kind"] == "lora" and not body["supported"]
    assert any("does not fit" in e for e in body["errors"]), body


class Unpickled:
    """Unpickling this leaves a file behind: proof that nothing unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickles_are_refused_and_never_unpickled(client_a, files, tmp_path):
    import torch

    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Unpickled(str(marker)))
    zipped = io.BytesIO()
    torch.save({"lora_A.weight": torch.ones(2, 2)}, zipped)
    for name, data in (("/evil.bin", payload), ("/evil.safetensors", payload),
                       ("/zip.safetensors", zipped.getvalue())):
        r = client_a.post("/v1/images/generations", json={
            "model": BASE, "prompt": "x", "loras": [{"path": files.url(name, data)}]})
        err = error_of(r, 400)
        assert err["code"] == "lora_unsupported_format" and err["param"] == "loras[0].path"
    assert not marker.exists()
    assert not Path("unpickled").exists()


def test_broken_adapters_answer_their_codes(client_a, adapters, files):
    truncated = files.url("/truncated.safetensors", adapters["first"][:-64])
    r = client_a.post("/v1/images/generations", json={
        "model": BASE, "prompt": "x", "loras": [{"path": adapters["a"]}, {"path": truncated}]})
    assert error_of(r, 400)["code"] == "lora_invalid"
    assert error_of(r, 400)["param"] == "loras[1].path"
    r = client_a.post("/v1/images/generations", json={
        "model": BASE, "prompt": "x", "loras": [{"path": "tessera/tiny-sdxl-lora"}]})
    err = error_of(r, 400)
    assert err["code"] == "lora_incompatible" and err["param"] == "loras[0].path"
    missing = files.url("/missing.safetensors", b"")
    files.files.pop("/missing.safetensors")
    r = client_a.post("/v1/images/generations", json={
        "model": BASE, "prompt": "x", "loras": [{"path": missing}]})
    assert error_of(r, 400)["code"] == "lora_unreachable"
    r = client_a.post("/v1/images/generations", json={
        "model": BASE, "prompt": "x", "loras": [{"path": "nobody/nothing"}]})
    assert error_of(r, 400)["code"] == "lora_unreachable"


def test_a_failing_adapter_fails_its_own_task_only(client_a, adapters, files):
    """NaN values pass the ingress's layout checks; the replica refuses them at load."""
    from safetensors.torch import load, save

    lora = load(adapters["first"])
    name = sorted(lora)[0]
    lora[name] = lora[name].clone().fill_(float("nan"))
    url = files.url("/nan.safetensors", save(lora))
    bad = submit(client_a, loras=[{"path": url}])
    good = submit(client_a)
    assert wait_task(client_a, good)["status"] == "completed"
    failed = wait_task(client_a, bad)
    assert failed["status"] == "failed" and failed["error"]["code"] == "lora_invalid", failed


@pytest.mark.parametrize("loras", [
    [{"path": "tessera/tiny-flux-lora"}] * 5,
    [{"path": "tessera/tiny-flux-lora", "scale": 100}],
    [{"path": ""}],
])
def test_too_many_adapters_or_a_wild_scale_is_a_400_naming_loras(client_a, loras):
    r = client_a.post("/v1/images/generations", json={"model": BASE, "prompt": "x",
                                                      "loras": loras})
    assert error_of(r, 400)["param"].startswith("loras")


def test_families_without_lora_support_refuse_adapters(client_a):
    r = client_a.post("/v1/images/generations", json={
        "model": "tessera/tiny-pixart-sigma", "prompt": "x",
        "loras": [{"path": TINY_LORA}]})
    err = error_of(r, 400)
    assert err["code"] == "lora_incompatible" and "tessera/tiny-pixart-sigma" in err["message"]
    r = client_a.post("/v1/images/generations", json={"model": BASE, "prompt": "x",
                                                      "lora_scale": 0.5})
    assert error_of(r, 400)["param"] == "lora_scale"


def test_the_openai_sdk_passes_adapters_in_extra_body(service, client_a, adapters):
    import base64

    from openai import OpenAI

    sdk = OpenAI(base_url=f"{service.base_url}/openai/v1", api_key=KEY_A, max_retries=0,
                 timeout=120)
    out = sdk.images.generate(model=BASE, prompt="a red fox", size="128x128",
                              response_format="b64_json",
                              extra_body={"seed": 11, "num_inference_steps": 2,
                                          "loras": [{"path": adapters["a"], "scale": 1.0}]})
    assert base64.b64decode(out.data[0].b64_json) == image_bytes(
        client_a, loras=[{"path": adapters["a"]}])


def test_edits_take_adapters_too(client_a, adapters):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (128, 128), (40, 120, 200)).save(buf, format="PNG")
    import base64

    image = base64.b64encode(buf.getvalue()).decode()

    def edit(loras) -> bytes:
        r = client_a.post("/v1/images/edits", json={
            "model": BASE, "prompt": "a yellow door", "image": image, "strength": 0.9,
            "seed": 5, "num_inference_steps": 2, "loras": loras})
        assert r.status_code == 202, r.text
        task = wait_task(client_a, r.json()["task_id"])
        assert task["status"] == "completed", task
        assert [a["path"] for a in task["request"]["loras"]] == [x["path"] for x in loras]
        return download(task["result"]["data"][0]["url"])

    plain = edit([])
    assert edit([{"path": adapters["a"]}]) != plain
    assert edit([{"path": adapters["a"], "scale": 0}]) == plain


def lora_repo(into: Path, weights: bytes, base: str = BASE) -> Path:
    """A LoRA repository as the Hub holds one: the adapter and a card naming its base."""
    into.mkdir(parents=True, exist_ok=True)
    (into / WEIGHTS).write_bytes(weights)
    (into / "README.md").write_text(f"---\nbase_model: {base}\ntags: [lora]\n---\n# a style\n")
    return into


def test_a_lora_directory_under_the_models_directory_imports(client_a, model_dir, adapters,
                                                            models_root):
    lora_repo(model_dir, adapters["second"])
    r = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": model_dir.name})
    v = r.json()
    assert v["kind"] == "lora" and v["supported"] and v["base_model"] == BASE, v
    assert str(models_root) not in r.text  # no server path in the answer
    r = client_a.post("/v1/my-models/import-hf", json={"validation_id": v["validation_id"]})
    assert r.status_code == 201, r.text
    model = r.json()["id"]
    assert image_bytes(client_a, model=model) == image_bytes(
        client_a, loras=[{"path": adapters["b"]}])


def test_hub_adapters_from_the_cache_by_repo_and_by_file(client_a, hf_home, adapters):
    """A repository in the Hugging Face cache (the Hub is offline here), named as owner/name
    and as owner/name/file.safetensors."""
    repo_id, revision = "tessera-tests/ink-lora", "0" * 39 + "2"
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    lora_repo(repo / "snapshots" / revision, adapters["second"])
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    by_url = image_bytes(client_a, loras=[{"path": adapters["b"]}])
    assert image_bytes(client_a, loras=[{"path": repo_id}]) == by_url
    assert image_bytes(client_a, loras=[{"path": f"{repo_id}/{WEIGHTS}"}]) == by_url
    v = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": repo_id}).json()
    assert v["kind"] == "lora" and v["supported"], v
    r = client_a.post("/v1/images/generations", json={
        "model": BASE, "prompt": "x", "loras": [{"path": f"{repo_id}/weights.bin"}]})
    assert error_of(r, 400)["code"] == "lora_unsupported_format"


def test_a_kohya_format_adapter_validates_against_its_base_and_runs(client_a, model_dir,
                                                                   service, files):
    """kohya names (`lora_unet_…`), the most common SDXL format: converted by the base
    pipeline's own loader at validation, and in the replica."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from safetensors.torch import load_file, save

    peft_named = load_file(service.data_dir / "tiny" / "sdxl-lora" / WEIGHTS)
    kohya = convert_state_dict_to_kohya({k[len("unet."):]: v for k, v in peft_named.items()})
    data = save({(k if k.startswith("lora_unet_") else f"lora_unet_{k}"): v.float()
                 for k, v in kohya.items()})
    lora_repo(model_dir, data, base="tessera/tiny-sdxl")
    v = client_a.post("/v1/my-models/validate-hf", json={"hf_model_id": model_dir.name}).json()
    assert v["kind"] == "lora" and v["supported"] and v["family"] == "sdxl", v
    assert not any("first used" in w for w in v["warnings"]), v  # checked now, not later
    v = client_a.post("/v1/my-models/validate-hf", json={
        "hf_model_id": model_dir.name, "base_model": BASE}).json()
    assert not v["supported"] and v["errors"], v
    twin = files.url("/sdxl.safetensors", (service.data_dir / "tiny" / "sdxl-lora" / WEIGHTS)
                     .read_bytes())
    kohya_url = files.url("/sdxl-kohya.safetensors", data)
    sdxl = "tessera/tiny-sdxl"
    assert image_bytes(client_a, model=sdxl, loras=[{"path": kohya_url}]) == image_bytes(
        client_a, model=sdxl, loras=[{"path": twin}])
