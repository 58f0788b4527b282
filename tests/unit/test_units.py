"""Unit tests: protocol conversion, registry, config, auth, the task state machine."""

from __future__ import annotations

import pytest

from deployments.registry import FAMILIES, family_for_pipeline
from serve_app.auth import ApiKeys, parse_api_keys
from serve_app.builder import app_config
from serve_app.catalog import CATALOG, price_per_image, requires_acceptance
from serve_app.core.config import PricingSettings, load_config
from serve_app.core.errors import AuthenticationError, InvalidRequestError, InvalidTransitionError
from serve_app.core.types import GenerateParams, GenerateResult, ParameterSpec, StoredImage
from serve_app.protocol import GenerationRequest
from serve_app.tasks.queue import FairQueue
from serve_app.tasks.state import Task
from serve_app.validation import license_from_model_card

SPEC = ParameterSpec(num_inference_steps=4, max_steps=8, guidance_scale=3.5,
                     max_guidance_scale=10, width=256, height=256, min_side=64, max_side=512,
                     max_pixels=512 * 256)


def convert(**fields):
    req = GenerationRequest(model="tm_x", prompt="p", **fields)
    return req.to_generate_params(SPEC)


# ---------------------------------------------------------------- protocol


def test_defaults_come_from_the_model():
    params, warnings = convert(seed=9)
    assert (params.width, params.height) == (256, 256)
    assert params.num_inference_steps == 4 and params.guidance_scale == 3.5
    assert params.seeds == [9] and warnings == []


def test_size_forms_and_rounding():
    params, warnings = convert(size="200x100")
    assert (params.width, params.height) == (208, 96)
    assert warnings == ["size rounded from 200x100 to 208x96 (sides must be multiples of 16)"]
    params, _ = convert(width=128, height=64)
    assert (params.width, params.height) == (128, 64)


@pytest.mark.parametrize("fields, param", [
    ({"size": "1024x64"}, "size"),       # side over max_side
    ({"size": "512x512"}, "size"),       # pixels over max_pixels
    ({"size": "32x64"}, "size"),         # side under min_side
    ({"num_inference_steps": 9}, "num_inference_steps"),
    ({"guidance_scale": 11}, "guidance_scale"),
    ({"negative_prompt": "x"}, "negative_prompt"),
])
def test_bounds(fields, param):
    with pytest.raises(InvalidRequestError) as info:
        convert(**fields)
    assert info.value.param == param


def test_guidance_distilled_models_ignore_guidance_with_a_warning():
    spec = SPEC.model_copy(update={"guidance_scale": None})
    req = GenerationRequest(model="m", prompt="p", guidance_scale=5)
    params, warnings = req.to_generate_params(spec)
    assert params.guidance_scale == 0.0 and "ignored" in warnings[0]


def test_seeds_random_when_missing_and_consecutive_for_n():
    a, _ = convert(n=3)
    b, _ = convert(n=3, seed=-1)
    assert len(set(a.seeds)) == 3 and a.seeds[1] == a.seeds[0] + 1
    assert a.seeds != b.seeds
    edge, _ = convert(n=2, seed=2**32 - 1)
    assert edge.seeds == [2**32 - 1, 0]


def test_every_model_fits_the_schema_envelope():
    """The OpenAPI bounds are the widest any model allows: no model accepts what the schema
    refuses, so a client generated from the schema can reach every model's full range."""
    from serve_app import protocol

    specs = [(f.name, f.parameters) for f in FAMILIES.values()] + [
        (e.id, e.parameters) for e in CATALOG.values() if e.parameters is not None]
    for name, p in specs:
        assert p.max_steps <= protocol.API_MAX_STEPS, name
        assert p.max_guidance_scale <= protocol.API_MAX_GUIDANCE, name
        assert protocol.API_MIN_SIDE <= p.min_side and p.max_side <= protocol.API_MAX_SIDE, name
    # the extremes of the schema's raw sides round into the envelope
    for side in (protocol._RAW_MIN_SIDE, protocol._RAW_MAX_SIDE):
        params, _ = GenerationRequest(model="m", prompt="p", width=side, height=side
                                      ).to_generate_params(
            spec=SPEC.model_copy(update={"min_side": protocol.API_MIN_SIDE,
                                         "max_side": protocol.API_MAX_SIDE,
                                         "max_pixels": protocol.API_MAX_SIDE ** 2}))
        assert params.width in (protocol.API_MIN_SIDE, protocol.API_MAX_SIDE)


def test_schema_states_the_size_forms():
    """What the validators enforce, the JSON Schema says too (for generated clients)."""
    import jsonschema

    from serve_app.protocol import SIZE_RE

    schema = GenerationRequest.model_json_schema()
    base = {"model": "m", "prompt": "p"}
    for body, ok in [({}, True), ({"size": "64x64"}, True), ({"width": 64, "height": 64}, True),
                     ({"size": "64x64", "width": 64}, False), ({"width": 64}, False),
                     ({"height": 64, "width": None}, False), ({"size": None, "width": 64,
                                                               "height": 64}, True),
                     ({"size": "big"}, False), ({"prompt": "  "}, False)]:
        valid = jsonschema.Draft202012Validator(schema).is_valid({**base, **body})
        assert valid == ok, body
        try:
            GenerationRequest(**{**base, **body})
            accepted = True
        except ValueError:
            accepted = False
        assert accepted == ok, body
    assert SIZE_RE.match("1024 x 768")


def test_blank_negative_prompt_is_absent():
    params, _ = convert(negative_prompt="  ")
    assert params.negative_prompt is None


# ---------------------------------------------------------------- registry and catalog


def test_registry_maps_pipeline_classes_to_families():
    assert family_for_pipeline("FluxPipeline").name == "flux"
    assert family_for_pipeline("FluxImg2ImgPipeline").name == "flux"
    assert family_for_pipeline("NoSuchPipeline") is None
    for name, spec in FAMILIES.items():
        assert spec.name == name and spec.tasks
        assert f"tessera/tiny-{name}" in CATALOG


def test_licences_and_prices():
    assert not requires_acceptance("apache-2.0") and not requires_acceptance("MIT")
    assert requires_acceptance("flux-1-dev-non-commercial-license")
    assert requires_acceptance(None)
    pricing = PricingSettings(per_model={"black-forest-labs/FLUX.1-dev": 0.1},
                              per_family={"flux": 0.02}, default_per_image=0.5)
    assert price_per_image("black-forest-labs/FLUX.1-dev", "flux", pricing) == 0.1
    assert price_per_image("black-forest-labs/FLUX.1-schnell", "flux", pricing) == 0.0054
    assert price_per_image("someone/flux-finetune", "flux", pricing) == 0.02
    assert price_per_image("tessera/tiny-flux", "flux", PricingSettings()) == 0.01


@pytest.mark.parametrize("card, licence", [
    ("---\nlicense: mit\n---\n", "mit"),
    ("---\nlicense: other\nlicense_name: my-licence\n---\nbody", "my-licence"),
    ("---\nlicense: [apache-2.0]\n---\n", "apache-2.0"),
    ("# no front matter\nlicense: mit", None),
    ("---\n: : broken yaml [\n---\n", None),
])
def test_licence_from_model_card(card, licence):
    assert license_from_model_card(card) == licence


# ---------------------------------------------------------------- config and auth


def test_config_rejects_unknown_keys_and_families():
    with pytest.raises(Exception, match="max_ongoing_request"):
        load_config({"ingress": {"max_ongoing_request": 3}}, environ={})
    with pytest.raises(Exception, match="unknown families"):
        app_config({"families": {"dalle": {}}}, environ={})


def test_config_env_overlay_for_endpoints(tmp_path):
    cfg = load_config({}, environ={"TESSERA_DATA_DIR": str(tmp_path / "d"),
                                   "TESSERA_S3_ENDPOINT": "127.0.0.1:9000"})
    assert cfg.data_dir == str(tmp_path / "d") and cfg.storage.backend == "s3"
    assert load_config({}, environ={}).storage.backend == "local"


def test_serve_options_autoscaling_or_fixed():
    cfg = load_config({"families": {"flux": {"num_gpus": 1, "autoscaling": {
        "min_replicas": 0, "max_replicas": 3}}}}, environ={})
    opts = cfg.families["flux"].serve_options()
    assert opts["ray_actor_options"]["num_gpus"] == 1
    assert opts["autoscaling_config"]["max_replicas"] == 3 and "num_replicas" not in opts
    assert cfg.ingress.serve_options()["num_replicas"] == 1


def test_autoscaling_window_must_hold_more_than_one_load_report():
    fast = {"metrics_interval_s": 0.5, "look_back_period_s": 2}
    cfg = load_config({"families": {"flux": {"autoscaling": fast}}}, environ={})
    assert cfg.families["flux"].serve_options()["autoscaling_config"]["metrics_interval_s"] == 0.5
    # Serve's own default interval is 10 s: a 2 s window alone is refused, naming both fields
    with pytest.raises(Exception, match="look_back_period_s.*metrics_interval_s"):
        load_config({"families": {"flux": {"autoscaling": {"look_back_period_s": 2}}}},
                    environ={})


def test_api_keys(tmp_path):
    assert parse_api_keys("k1=a, k2=b") == {"k1": "a", "k2": "b"}
    with pytest.raises(InvalidRequestError):
        parse_api_keys("k1")
    keys = ApiKeys.from_env(tmp_path, environ={"TESSERA_API_KEYS": "k1=a"})
    assert keys.tenant_for({"authorization": "Bearer k1"}) == "a"
    assert keys.tenant_for({"api-key": "k1"}) == "a"
    with pytest.raises(AuthenticationError):
        keys.tenant_for({"authorization": "Bearer k2"})
    dev = ApiKeys.from_env(tmp_path, environ={})
    key = (tmp_path / "dev_api_key").read_text().strip()
    assert dev.tenant_for({"api_key": key}) == "dev"
    assert ApiKeys.from_env(tmp_path, environ={}).tenant_for({"api_key": key}) == "dev"


# ---------------------------------------------------------------- task state machine


def make_task(**kw) -> Task:
    params = GenerateParams(prompt="p", width=64, height=32, num_inference_steps=4,
                            guidance_scale=None, seeds=[1, 2])
    base = dict(id="t1", tenant="a", model="m", family="flux", source="s", params=params,
                created_at=100.0, deadline_at=200.0, price_per_image=0.5)
    return Task(**{**base, **kw})


def test_task_lifecycle_is_timestamped():
    t = make_task()
    t.transition("in_progress", now=101.0)
    image = StoredImage(key="k", seed=1, bytes=3, content_type="image/png")
    t.complete(GenerateResult(images=[image] * 2, width=64, height=32), now=103.0)
    assert t.status == "completed" and t.started_at == 101.0 and t.completed_at == 103.0
    assert [(h["status"], h["at"]) for h in t.history] == [
        ("queued", 100.0), ("in_progress", 101.0), ("completed", 103.0)]
    assert t.result.usage.model_dump() == {"images": 2, "output_tokens": 2 * 4 * 2,
                                           "total_tokens": 2 * 4 * 2, "cost": 1.0,
                                           "currency": "USD", "runtime_ms": 2000.0}


@pytest.mark.parametrize("path", [
    ["completed"], ["in_progress", "completed", "failed"], ["failed", "in_progress"],
])
def test_invalid_transitions_are_refused(path):
    t = make_task()
    with pytest.raises(InvalidTransitionError):
        for status in path:
            t.transition(status)


def test_failure_records_code():
    t = make_task()
    t.fail("timeout", "too slow", now=150.0)
    assert t.error.model_dump() == {"code": "timeout", "message": "too slow"}
    assert t.history[-1] == {"status": "failed", "at": 150.0, "reason": "timeout"}


def test_fair_queue_round_robin_and_positions():
    q = FairQueue()
    for i in range(4):
        q.push("big", f"b{i}")
    q.push("small", "s0")
    assert q.position("small", "s0") == 1
    assert q.position("big", "b2") == 3
    order = [q.pop() for _ in range(5)]
    assert order == ["b0", "s0", "b1", "b2", "b3"]
    assert q.pop() is None and len(q) == 0


def test_mask_resize_stays_binary_and_routing():
    from PIL import Image

    from serve_app.core.errors import UnsupportedTaskError
    from serve_app.rules import route_edit

    mask = Image.new("L", (40, 32), 0)
    mask.paste(255, (10, 8, 30, 24))
    resized = mask.resize((80, 64), resample=0)  # as the ingress does
    assert set(resized.getdata()) == {0, 255}
    assert resized.getpixel((40, 32)) == 255 and resized.getpixel((2, 2)) == 0
    assert route_edit(["text-to-image", "image-to-image", "inpaint"], True, "m") == "inpaint"
    assert route_edit(["text-to-image", "image-to-image"], False, "m") == "image-to-image"
    assert route_edit(["text-to-image", "edit"], False, "m") == "edit"
    with pytest.raises(UnsupportedTaskError):
        route_edit(["text-to-image"], False, "m")
    with pytest.raises(InvalidRequestError):
        route_edit(["inpaint"], False, "m")


def test_url_guard_refuses_private_addresses():
    from serve_app.core.errors import ForbiddenURLError
    from serve_app.core.netguard import resolve as check_url_allowed

    for url in ("http://127.0.0.1/x.png", "http://10.1.2.3/x.png", "http://169.254.169.254/",
                "http://[::1]/x.png", "http://192.168.0.1/", "file:///etc/passwd"):
        with pytest.raises(ForbiddenURLError):
            check_url_allowed(url, param="image", allow_private=False)
    check_url_allowed("http://127.0.0.1/x.png", param="image", allow_private=True)


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize("key, signature", [
    ("ûdI", "ûdI"), ("a/b.png", "\x02.\x91ÒÜóF\U000ec915Ëb\U0002c667é"), ("a/b.png", "\udcff"),
    ("a/\udcff.png", "00"), ("a/b.png", "")])
def test_signed_links_refuse_any_signature_without_crashing(tmp_path, key, signature):
    from serve_app.core.errors import InvalidSignatureError
    from serve_app.core.storage import LocalDiskStore

    store = LocalDiskStore(tmp_path / "files", tmp_path / "secret", None)
    with pytest.raises(InvalidSignatureError):
        store.verify("GET", key, 2**40, signature)


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


@pytest.mark.parametrize("model_id, says", [
    ("x" * 1000, "neither a model directory under"),
    ("a/" + "b" * 998, "not a valid Hugging Face repo id"),
    ("a--b/c", "not a valid Hugging Face repo id"),
    ("a/b\x00c", "neither a model directory under"),
    ("~\x0f\x8d`\U0007061aepp\x85\x0c\x9a", "neither a model directory under"),  # no home dir
])
def test_validate_answers_odd_ids_with_a_reason(tmp_path, model_id, says):
    from serve_app.core.config import TesseraConfig
    from serve_app.validation import validate

    result = validate(model_id, TesseraConfig(data_dir=str(tmp_path)), "val_x")
    assert not result.supported and says in result.errors[0], result.errors


def test_validate_says_the_hub_was_unreachable_quickly(tmp_path, monkeypatch):
    """A repo id that is not cached, with the Hub unreachable: 'could not be reached', at once
    (huggingface_hub alone retries for 23 s), never 'not a diffusers pipeline'."""
    import time

    from huggingface_hub import constants

    from serve_app import validation
    from serve_app.core.config import TesseraConfig

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    started = time.monotonic()
    result = validation.validate("black-forest-labs/FLUX.1-schnell",
                                 TesseraConfig(data_dir=str(tmp_path)), "val_x")
    assert time.monotonic() - started < 5
    assert not result.supported
    message = result.errors[0]
    assert "could not be reached" in message and "not a diffusers" not in message
    assert "the Hugging Face cache" in message  # where it looked, without the server's path
    assert str(tmp_path) not in message


# ---------------------------------------------------------------- PNG files


@pytest.mark.parametrize("mode,shape", [("RGB", (37, 53, 3)), ("RGBA", (1, 9, 4)),
                                        ("L", (20, 1)), ("RGB", (256, 256, 3))])
def test_png_files_decode_to_exactly_the_pixels(mode, shape):
    import io

    import numpy as np
    from PIL import Image

    from deployments.outputs import encode_image

    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    data = encode_image(Image.fromarray(pixels, mode), "png")
    Image.open(io.BytesIO(data)).verify()  # signature, chunk order, every chunk's CRC
    back = Image.open(io.BytesIO(data))
    assert (back.format, back.mode, back.size) == ("PNG", mode, (shape[1], shape[0]))
    assert np.array_equal(np.asarray(back), pixels)


def test_png_of_a_palette_image_keeps_its_palette():
    import io

    from PIL import Image

    from deployments.outputs import encode_image

    image = Image.new("P", (5, 3), 2)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    back = Image.open(io.BytesIO(encode_image(image, "png")))
    assert back.mode == "P" and back.convert("RGB").getpixel((4, 2)) == (0, 255, 0)


def test_outputs_are_stored_when_a_first_write_fails(tmp_path):
    """Encoding and the first write share a worker thread; a write that fails there is retried
    by the store's own retry loop, and every image still lands under its key."""
    import asyncio
    import io
    import time

    from PIL import Image

    from deployments.outputs import store_outputs
    from serve_app.core.storage import LocalDiskStore
    from serve_app.core.types import GenerateParams, GenerateRequest

    class BusyOnce(LocalDiskStore):
        failures = 1

        def put(self, key, data, content_type):
            if self.failures:
                self.failures -= 1
                raise OSError("disk busy")
            super().put(key, data, content_type)

    store = BusyOnce(tmp_path / "out", tmp_path / "secret", None)
    store.backoff_s = 0.01
    params = GenerateParams(prompt="p", width=8, height=8, num_inference_steps=1,
                            guidance_scale=None, seeds=[4, 5])
    request = GenerateRequest(task_id="task_1", tenant="a", model="m", created_at=time.time(),
                              params=params)
    images = [Image.new("RGB", (8, 8), color) for color in ("red", "blue")]
    result = asyncio.run(store_outputs(store, request, None, images, {"inference": 1.0}))
    assert [im.seed for im in result.images] == [4, 5] and store.failures == 0
    assert [Image.open(io.BytesIO(store.get(im.key))).getpixel((0, 0))
            for im in result.images] == [(255, 0, 0), (0, 0, 255)]
    assert [im.bytes for im in result.images] == [len(store.get(im.key)) for im in result.images]
    assert set(result.timings_ms) == {"inference", "encode", "storage"}


# ---------------------------------------------------------------- benchmarks


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="reads /proc (Linux)")
def test_benchmark_cpu_accounting_sees_its_own_work():
    import time

    from loadtests.bench_overhead import process_cpu

    before = process_cpu()["benchmark client"]
    end = time.process_time() + 0.3
    while time.process_time() < end:  # burn 0.3 s of CPU in this process
        pass
    spent = process_cpu()["benchmark client"] - before
    assert 0.25 <= spent <= 1.0
