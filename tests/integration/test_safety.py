"""The safety checker over HTTP, with the tiny checker (it flags an image whose mean red, on the
image shrunk to 32x32, is above half scale; the tests compute that themselves): each action on
real generations, every dialect's fields, turning it off per tenant, and a start that stops."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.support.api import KEY_A, KEY_B, TENANT_B, download, error_of, generate, wait_task

TINY, CHECKER = "tessera/tiny-flux", "tessera/tiny-safety-checker"
ASK = {"prompt": "a red fox", "size": "256x256", "num_inference_steps": 4,
       "output_format": "png"}
BODY = {"model": TINY, **ASK}


def mean_red(data: bytes) -> float:
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32), Image.BILINEAR)
    return float(np.asarray(image, dtype=float)[..., 0].mean() / 255)


def detail(pixels: np.ndarray) -> float:
    """How much neighbouring pixels differ: what a heavy blur takes away."""
    return float(np.abs(np.diff(pixels, axis=1)).mean())


def app(deploy, name: str, action: str):
    return deploy(name, {
        "families": {"flux": {"num_replicas": 1}}, "inputs": {"allow_private_urls": True},
        "safety": {"checker": CHECKER, "action": action,
                   "tenants": {TENANT_B: {"allow_disable": True}}}})


@pytest.fixture(scope="module")
def flagging(deploy):
    return app(deploy, "safety-flag", "flag")


@pytest.fixture(scope="module")
def blurring(deploy):
    return app(deploy, "safety-blur", "blur")


@pytest.fixture(scope="module")
def blocking(deploy):
    return app(deploy, "safety-block", "block")


@pytest.fixture(scope="module")
def seeds(service):
    """A seed the checker flags and one it passes, clearly on their sides of the line, with
    the image each makes where no checker is configured (the session's service)."""
    found: dict[bool, tuple[int, bytes]] = {}
    with service.client(KEY_A) as client:
        for first in range(0, 40, 4):
            done = generate(client, TINY, **{**ASK, "n": 4, "seed": first})
            for item in done["result"]["data"]:
                assert item["nsfw"] is None  # no checker configured: unchecked
                data = download(item["url"])
                m = mean_red(data)
                if abs(m - 0.5) > 0.001:
                    found.setdefault(m > 0.5, (item["seed"], data))
            if len(found) == 2:
                return found
    raise AssertionError(f"no seed on each side of the line among 40: {found}")


def test_the_verdicts_are_the_checkers_and_flag_keeps_the_images(flagging, seeds):
    with flagging.client(KEY_A) as client:
        done = generate(client, TINY, **{**ASK, "n": 4, "seed": 0})
    data = done["result"]["data"]
    assert done["request"]["safety_checker"] is True
    flagged = 0
    for item in data:
        m = mean_red(download(item["url"]))
        if abs(m - 0.5) > 0.001:
            assert item["nsfw"] == (m > 0.5), (m, item)
        flagged += item["nsfw"]
    assert done["result"]["safety"] == {"checker": CHECKER, "action": "flag",
                                        "flagged": flagged}
    assert done["result"]["usage"]["images"] == 4
    for is_flagged, (seed, original) in seeds.items():  # flag: the same bytes, marked
        with flagging.client(KEY_A) as client:
            done = generate(client, TINY, **{**ASK, "seed": seed})
        assert done["result"]["data"][0]["nsfw"] is is_flagged
        assert download(done["result"]["data"][0]["url"]) == original


def test_unflagged_images_are_the_bytes_of_an_unchecked_run(blurring, blocking, seeds):
    seed, original = seeds[False]
    for service in (blurring, blocking):
        with service.client(KEY_A) as client:
            done = generate(client, TINY, **{**ASK, "seed": seed})
        assert done["result"]["data"][0]["nsfw"] is False
        assert download(done["result"]["data"][0]["url"]) == original


def test_a_flagged_original_is_blurred_or_black_and_stored_nowhere(blurring, blocking, seeds):
    seed, original = seeds[True]
    pixels = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"), dtype=float)
    for service, action in ((blurring, "blur"), (blocking, "block")):
        with service.client(KEY_A) as client:
            done = generate(client, TINY, **{**ASK, "seed": seed})
        assert done["result"]["data"][0]["nsfw"] is True
        assert done["result"]["safety"] == {"checker": CHECKER, "action": action,
                                            "flagged": 1}
        assert done["result"]["usage"]["images"] == 1  # billed: it was made
        stored = np.asarray(Image.open(io.BytesIO(download(done["result"]["data"][0]["url"])))
                            .convert("RGB"), dtype=float)
        assert stored.shape == pixels.shape
        if action == "block":
            assert not stored.any()  # black
        else:
            assert detail(stored) < detail(pixels) / 4  # heavily blurred
        for path in (service.data_dir / "outputs").rglob("*"):
            if path.is_file():
                assert path.read_bytes() != original, path
                if path.suffix == ".png":
                    assert not np.array_equal(np.asarray(Image.open(path).convert("RGB"),
                                                         dtype=float), pixels), path


def test_every_dialect_tells_the_truth(blocking, flagging, seeds):
    import httpx
    from openai import OpenAI

    seed = seeds[True][0]
    with blocking.client(KEY_A) as client:
        deepinfra = client.post(f"/v1/inference/{TINY}", json={
            "prompt": "a red fox", "width": 256, "height": 256, "num_inference_steps": 4,
            "seed": seed, "num_images": 2})
        assert deepinfra.status_code == 200, deepinfra.text
        verdicts = deepinfra.json()["nsfw_content_detected"]
        assert verdicts[0] is True and all(isinstance(v, bool) for v in verdicts)
        job = client.post("/v1/images/generations", json={
            "model": TINY, "prompt": "a red fox", "image_size": {"width": 256, "height": 256},
            "num_inference_steps": 4, "seed": seed}).json()["job_id"]  # Hyperstack's shape
        wait_task(client, job)
        task = client.get(f"/v1/images/tasks/{job}").json()
        assert task["result"]["data"][0]["nsfw"] is True
        predicted = client.post(f"/replicate/v1/models/{TINY}/predictions", headers={
            "Prefer": "wait=30"}, json={"input": {"prompt": "a red fox", "width": 256,
                                                  "height": 256, "seed": seed,
                                                  "num_inference_steps": 4}})
        prediction = predicted.json()
        assert prediction["status"] == "failed" and prediction["output"] is None
        assert prediction["error"].startswith("NSFW content detected")
    openai = OpenAI(base_url=f"{blocking.base_url}/openai/v1", api_key=KEY_A,
                    http_client=httpx.Client(trust_env=False))
    image = openai.images.generate(model=TINY, prompt="a red fox", size="256x256",
                                   response_format="b64_json",
                                   extra_body={"seed": seed, "num_inference_steps": 4})
    black = Image.open(io.BytesIO(base64.b64decode(image.data[0].b64_json)))
    assert black.size == (256, 256) and not black.getbbox()  # OpenAI's shape: a black image
    with flagging.client(KEY_A) as client:
        out = client.post(f"/fal/run/{TINY}", json={
            "prompt": "a red fox", "image_size": {"width": 256, "height": 256},
            "num_inference_steps": 4, "seed": seed})
        assert out.status_code == 200, out.text
        assert out.json()["has_nsfw_concepts"] == [True]


def test_only_allowed_tenants_turn_it_off(flagging, seeds):
    seed = seeds[True][0]
    with flagging.client(KEY_A) as client:  # tenant A is not allowed
        error = error_of(client.post("/v1/images/generations", json={
            **BODY, "safety_checker": False}), 400)
        assert error["param"] == "safety_checker"
        fal = client.post(f"/fal/run/{TINY}", json={"prompt": "x",
                                                   "enable_safety_checker": False})
        assert fal.status_code == 400 and "enable_safety_checker" in fal.json()["detail"]
        replicate = client.post(f"/replicate/v1/models/{TINY}/predictions", json={
            "input": {"prompt": "x", "disable_safety_checker": True}})
        assert replicate.status_code == 422
        assert "disable_safety_checker" in replicate.json()["detail"]
    with flagging.client(KEY_B) as client:  # tenant B is
        done = generate(client, TINY, **{**ASK, "seed": seed, "safety_checker": False})
        assert done["request"]["safety_checker"] is False
        assert done["result"]["data"][0]["nsfw"] is None and done["result"]["safety"] is None
        fal = client.post(f"/fal/run/{TINY}", json={
            "prompt": "a red fox", "image_size": {"width": 256, "height": 256},
            "num_inference_steps": 4, "seed": seed, "enable_safety_checker": False})
        assert fal.json()["has_nsfw_concepts"] == [None]


def test_no_previews_and_webhooks_carry_the_verdicts(flagging, seeds, receiver):
    hook = receiver()
    with flagging.client(KEY_A) as client:
        made = client.post("/v1/images/generations", json={
            **BODY, "seed": seeds[True][0], "preview": True, "webhook": hook.url}).json()
        assert any("preview is off" in w for w in made["warnings"])
        with client.stream("GET", f"/v1/tasks/{made['task_id']}/events") as events:
            names = [line.split(":", 1)[1].strip() for line in events.iter_lines()
                     if line.startswith("event:")]
    assert "preview" not in names and names[-1] == "done"
    hook.wait(1)
    (body,) = hook.bodies()
    assert body["result"]["data"][0]["nsfw"] is True
    assert body["result"]["safety"]["flagged"] == 1


@pytest.mark.parametrize("checker, says", [("no-such-dir", "no-such-dir"),
                                           ("text-model", "not an image classifier")])
def test_a_checker_that_cannot_load_stops_the_start(tmp_path, checker, says):
    from transformers import CLIPTextConfig

    models = tmp_path / "models"
    CLIPTextConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                   intermediate_size=8).save_pretrained(models / "text-model")
    config = tmp_path / "args.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nmodels_dir: {models}\n"
                      f"safety: {{checker: {checker}}}\n")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "serve_app.run", "--config", str(config),
                          "--port", "1"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and time.monotonic() - started < 60
    assert "safety.checker" in out.stderr and says in out.stderr, out.stderr[-2000:]
