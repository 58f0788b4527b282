"""ControlNets and reference images on the replica (`deployments.conditioning`), without Ray:
which tasks may share a call, the control images' preprocessing, and the real tiny pipelines
where a rule is about bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deployments.calls import Job, PipelineCalls
from deployments.conditioning import Conditioning, canny, ip_adapter_files
from deployments.registry import FAMILIES
from serve_app.core.types import (
    ControlRef,
    GenerateParams,
    GenerateRequest,
    ModelSource,
    ReferenceRef,
)

ASK = dict(prompt="a fox", width=64, height=64, num_inference_steps=2, guidance_scale=3.5,
           seeds=[1])


def cref(family: str = "flux", sha: str = "a", scale: float = 1.0, **fields) -> ControlRef:
    name = f"tessera/tiny-{family}-controlnet"
    return ControlRef(path=name, source=ModelSource(base=name), image_key="k",
                      image_sha256=sha, conditioning_scale=scale, **fields)


def job(task_id: str = "t", controls=(), refs=(), **params) -> Job:
    made = Job(GenerateRequest(task_id=task_id, tenant="x", model="m", created_at=0,
                               params=GenerateParams(**{**ASK, **params})))
    made.controls, made.references = list(controls), list(refs)
    return made


def card(color, box=True) -> Image.Image:
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:] = color
    if box:
        pixels[16:40, 20:44] = 255
    return Image.fromarray(pixels)


def conditioning(family: str, tmp_path) -> Conditioning:
    return Conditioning(FAMILIES[family], str(tmp_path), Path(tmp_path) / "models", "cpu",
                        None)


def test_what_tasks_must_agree_on_to_share_a_call(tmp_path):
    cond = conditioning("flux", tmp_path)
    plain = GenerateParams(**ASK)
    assert cond.batch_key(plain) == ()
    # at scale 0 a ControlNet is not run: the task is a plain one
    assert cond.batch_key(GenerateParams(**ASK, controlnets=[cref(scale=0)])) == ()
    # one ControlNet: the control image is per image, so it is not in the key
    one_a = cond.batch_key(GenerateParams(**ASK, controlnets=[cref(sha="a")]))
    assert one_a == cond.batch_key(GenerateParams(**ASK, controlnets=[cref(sha="b")]))
    assert one_a != cond.batch_key(GenerateParams(**ASK, controlnets=[cref(scale=0.5)]))
    assert one_a != cond.batch_key(GenerateParams(**ASK, controlnets=[cref(start=0.2)]))
    # two: one control image each for the whole call
    two = [cref(sha="a"), cref(sha="b")]
    assert cond.batch_key(GenerateParams(**ASK, controlnets=two)) != cond.batch_key(
        GenerateParams(**ASK, controlnets=[cref(sha="a"), cref(sha="c")]))
    redux = ModelSource(base="tessera/tiny-flux-redux")
    with_ref = GenerateParams(**ASK, reference_images=[ReferenceRef(
        image_key="k", image_sha256="r")], reference_model=redux)
    assert cond.batch_key(with_ref) != ()
    zero_ref = GenerateParams(**ASK, reference_images=[ReferenceRef(
        image_key="k", image_sha256="r", scale=0)], reference_model=redux)
    assert cond.batch_key(zero_ref) == ()
    assert not cond.runs_alone(GenerateParams(**ASK, controlnets=[cref()]))
    # SD 3.5's ControlNet pipeline draws from torch's global generator: a call per task
    sd3 = conditioning("sd3", tmp_path)
    assert sd3.runs_alone(GenerateParams(**ASK, controlnets=[cref("sd3")]))
    assert not sd3.runs_alone(GenerateParams(**ASK, controlnets=[cref("sd3", scale=0)]))


def test_canny_draws_the_edges_white_on_black():
    edges = np.asarray(canny(card((200, 20, 20))))
    assert edges.shape == (64, 64, 3)
    assert set(np.unique(edges)) == {0, 255}
    assert edges[16:40, 20].any() and not edges[50:, :].any() and not edges[24:32, 28:36].any()


def test_ip_adapter_files_as_named():
    assert ip_adapter_files("/models/ipa") == ("/models/ipa", "", "ip-adapter.safetensors")
    assert ip_adapter_files("h94/IP-Adapter/sdxl_models/ip-adapter_sdxl.safetensors") == (
        "h94/IP-Adapter", "sdxl_models", "ip-adapter_sdxl.safetensors")


@pytest.fixture(scope="module")
def tiny_calls(tmp_path_factory):
    from deployments.loading import load_pipeline

    data = tmp_path_factory.mktemp("data")

    def make(family: str):
        spec = FAMILIES[family]
        base = load_pipeline(ModelSource(base=f"tessera/tiny-{family}"), str(data), "cpu", None,
                             True, spec=spec)
        cond = Conditioning(spec, str(data), data / "models", "cpu", None)
        return base, PipelineCalls(spec, 4, "cpu", conditioning=cond)

    return make


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_sd3_controlnet_tasks_keep_their_bytes_though_the_pipeline_uses_the_global_rng(
        tiny_calls):
    base, calls = tiny_calls("sd3")
    red, blue = card((200, 20, 20)), card((20, 20, 200), box=False)
    first = calls.run(base, [job(controls=[red], controlnets=[cref("sd3")])])[0]
    import torch

    torch.manual_seed(12345)  # whatever the global generator was left at
    again = calls.run(base, [job(controls=[red], controlnets=[cref("sd3")])])[0]
    assert same(first, again)
    jobs = [job("a", controls=[red], controlnets=[cref("sd3")]),
            job("b", controls=[blue], controlnets=[cref("sd3", sha="b")])]
    assert len(calls.batch_groups(jobs)) == 2


@pytest.mark.slow
def test_one_controlnet_batches_with_per_image_control_images(tiny_calls):
    base, calls = tiny_calls("flux")
    red, blue = card((200, 20, 20)), card((20, 20, 200), box=False)
    a = job("a", controls=[red], controlnets=[cref(sha="r")])
    b = job("b", controls=[blue], controlnets=[cref(sha="b")], prompt="a boat", seeds=[4, 5])
    groups = calls.batch_groups([a, b])
    assert len(groups) == 1
    together = calls.run(base, groups[0])
    alone = calls.run(base, [a]) + calls.run(base, [b])
    assert len(together) == 3 and all(same(x, y) for x, y in zip(together, alone, strict=True))
    assert not same(together[0], calls.run(base, [job("c")])[0])


@pytest.mark.slow
def test_an_ip_adapter_is_on_the_base_only_for_reference_calls(tiny_calls):
    base, calls = tiny_calls("sdxl")
    plain = calls.run(base, [job()])[0]
    ipa = ModelSource(base="tessera/tiny-sdxl-ip-adapter")
    ref = [ReferenceRef(image_key="k", image_sha256="r")]
    steered = calls.run(base, [job(refs=[card((200, 20, 20))], reference_images=ref,
                                   reference_model=ipa)])[0]
    assert not same(plain, steered)
    assert base.unet.encoder_hid_proj is not None  # loaded while reference tasks come
    assert same(calls.run(base, [job()])[0], plain)  # unloaded for a plain one
    assert base.unet.encoder_hid_proj is None
