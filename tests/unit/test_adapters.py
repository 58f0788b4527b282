"""The replica's adapter path without Serve: the server's own grouping and call code
(`PipelineCalls`) and its adapter cache on the real tiny pipelines, with peft-made adapters."""

from __future__ import annotations

import hashlib

import pytest

from deployments.adapters import AdapterCache, checkpoint_shapes, misfits, takes_loras
from deployments.calls import Job, PipelineCalls
from deployments.loading import load_pipeline
from deployments.registry import FAMILIES
from deployments.tiny_lora import WEIGHTS, build_tiny_lora, ensure_tiny_lora
from serve_app.core.errors import LoraIncompatibleError, LoraInvalidError
from serve_app.core.types import AdapterRef, GenerateParams, GenerateRequest
from tests.support.families import family_param

LORA_FAMILIES = sorted(n for n, s in FAMILIES.items()
                       if all(takes_loras(c) for c in s.pipelines.values()))


def ref(data: bytes, scale: float = 1.0, path: str = "x") -> AdapterRef:
    sha = hashlib.sha256(data).hexdigest()
    return AdapterRef(path=path, scale=scale, sha256=sha, key=f"t/loras/{sha}", size=len(data))


def job(task_id: str, loras=(), seed: int = 1, prompt: str = "a red fox") -> Job:
    params = GenerateParams(prompt=prompt, width=64, height=64, num_inference_steps=2,
                            guidance_scale=3.5, seeds=[seed], loras=list(loras))
    return Job(GenerateRequest(task_id=task_id, tenant="t", model="m", created_at=0.0,
                               params=params))


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("adapters")
    pipe = load_pipeline("tessera/tiny-flux", str(data_dir), "cpu", None, batch_invariant=True)
    first = (ensure_tiny_lora(data_dir, "flux") / WEIGHTS).read_bytes()
    build_tiny_lora(pipe, "flux", data_dir / "second", seed=1)
    second = (data_dir / "second" / WEIGHTS).read_bytes()
    cache = AdapterCache(cpu_bytes=1 << 30, device_bytes=1 << 30, batch_invariant=True)
    calls = PipelineCalls(FAMILIES["flux"], 4, "cpu", batch_invariant=True, adapters=cache)
    return pipe, calls, cache, first, second, data_dir


def run(calls, pipe, *jobs):
    groups = calls.batch_groups(list(jobs))
    out = {}
    for group in groups:
        for j in group:
            for r in j.params.loras:
                if not calls.adapters.has(r.sha256):
                    calls.adapters.prepare(pipe, r, DATA[r.sha256], "loras[0].path", 256)
        images = calls.run(pipe, group)
        for j, image in zip(group, images, strict=True):
            out[j.task_id] = image.tobytes()
    return out, len(groups)


DATA: dict[str, bytes] = {}


def test_adapters_switch_exactly_and_batch_only_with_equal_sets(flux):
    pipe, calls, cache, first, second, _ = flux
    a, b = ref(first), ref(second)
    DATA.update({a.sha256: first, b.sha256: second})
    base = run(calls, pipe, job("base"))[0]["base"]
    with_a = run(calls, pipe, job("a", [a]))[0]["a"]
    with_b = run(calls, pipe, job("b", [b]))[0]["b"]
    assert len({base, with_a, with_b}) == 3  # each adapter changes the image
    zero = run(calls, pipe, job("z", [ref(first, 0.0)]))[0]["z"]
    assert zero == base  # scale 0: the base's bytes
    both = run(calls, pipe, job("ab", [a, b]))[0]["ab"]
    assert both not in (base, with_a, with_b)  # two adapters compose
    loads = cache.loads
    for _ in range(5):  # many switches: no drift, nothing loaded again
        for name, loras, want in (("base", [], base), ("a", [a], with_a), ("b", [b], with_b)):
            assert run(calls, pipe, job(name, loras))[0][name] == want
    assert cache.loads == loads
    # in flight together: one call per adapter set, the same bytes as alone
    out, groups = run(calls, pipe, job("base", []), job("a", [a]), job("b", [b]),
                      job("a2", [a]))
    assert groups == 3
    assert (out["base"], out["a"], out["b"], out["a2"]) == (base, with_a, with_b, with_a)


def test_device_cache_evicts_the_least_recently_used(flux):
    _, _, _, first, second, data_dir = flux
    pipe = load_pipeline("tessera/tiny-flux", str(data_dir), "cpu", None, batch_invariant=True)
    a, b = ref(first), ref(second)
    small = AdapterCache(cpu_bytes=1 << 30, device_bytes=a.size + 1)
    calls = PipelineCalls(FAMILIES["flux"], 4, "cpu", batch_invariant=True, adapters=small)
    DATA.update({a.sha256: first, b.sha256: second})
    run(calls, pipe, job("a", [a]))
    run(calls, pipe, job("b", [b]))
    assert small.loads == 2 and len(pipe.get_list_adapters().get("transformer", [])) <= 2
    # only one fits: b replaced a on the device, so a loads again
    run(calls, pipe, job("a", [a]))
    assert small.loads == 3


def test_an_adapter_for_another_base_or_a_corrupt_one_is_refused(flux, tmp_path):
    from safetensors.torch import save

    pipe, _, _, first, _, data_dir = flux
    sdxl = load_pipeline("tessera/tiny-sdxl", str(data_dir), "cpu", None, batch_invariant=False)
    other = (ensure_tiny_lora(data_dir, "sdxl") / WEIGHTS).read_bytes()
    cache = AdapterCache(1 << 30, 1 << 30)
    with pytest.raises(LoraIncompatibleError) as info:
        cache.prepare(pipe, ref(other), other, "loras[0].path", 256)
    assert info.value.param == "loras[0].path"
    import torch

    bad = save({"transformer.x.to_q.lora_A.weight": torch.tensor([[float("nan")]]),
                "transformer.x.to_q.lora_B.weight": torch.ones(1, 1)})
    with pytest.raises(LoraInvalidError):
        cache.prepare(pipe, ref(bad), bad, "loras[1].path", 256)
    assert not cache.has(ref(other).sha256)
    del sdxl


def test_header_shapes_check_an_adapter_without_loading_the_base(flux):
    from serve_app.core.lora import header_shapes

    pipe, _, _, first, _, data_dir = flux
    base = checkpoint_shapes(data_dir / "tiny" / "flux")
    assert misfits(header_shapes(first), base) == []
    other = (ensure_tiny_lora(data_dir, "sdxl") / WEIGHTS).read_bytes()
    assert misfits(header_shapes(other), base)
    shifted = {k.replace("transformer_blocks.0.", "transformer_blocks.99."): v
               for k, v in header_shapes(first).items()}
    assert any("no module" in p for p in misfits(shifted, base))


def test_families_that_take_adapters():
    assert {"flux", "flux2", "sdxl", "sd3", "qwen-image", "z-image"} <= set(LORA_FAMILIES)
    assert "pixart-sigma" not in LORA_FAMILIES and "hunyuan-image" not in LORA_FAMILIES


def test_hot_swapped_adapters_give_the_bytes_of_freshly_loaded_ones(flux):
    """Compiled replicas swap adapters into fixed slots; the same adapter gives the same bytes
    whichever way it arrived (run here uncompiled: the swap itself is what is checked)."""
    from deployments.adapters import enable_hotswap

    _, _, _, first, second, data_dir = flux
    a, b = ref(first), ref(second)
    DATA.update({a.sha256: first, b.sha256: second})

    def fresh():
        pipe = load_pipeline("tessera/tiny-flux", str(data_dir), "cpu", None,
                             batch_invariant=True, hotswap_rank=8)
        cache = AdapterCache(1 << 30, 1 << 30, hotswap_rank=8, batch_invariant=True, slots=1)
        calls = PipelineCalls(FAMILIES["flux"], 4, "cpu", batch_invariant=True, adapters=cache)
        return pipe, calls, cache

    pipe, calls, cache = fresh()
    with_a = run(calls, pipe, job("a", [a]))[0]["a"]
    with_b = run(calls, pipe, job("b", [b]))[0]["b"]  # swapped into a's slot
    assert run(calls, pipe, job("a", [a]))[0]["a"] == with_a
    pipe2, calls2, _ = fresh()
    assert run(calls2, pipe2, job("b", [b]))[0]["b"] == with_b
    with pytest.raises(RuntimeError):  # too late once an adapter is in: the replica calls it
        enable_hotswap(pipe2, 8)        # at load, before compiling


@pytest.mark.parametrize("family", [family_param(n) for n in LORA_FAMILIES])
def test_every_lora_family_has_a_tiny_lora_that_fits_and_changes_its_images(family, tmp_path):
    """`tessera/tiny-<family>-lora` of every family whose pipelines load LoRAs: laid out as on
    the Hub, it fits its base by the weight headers and by the loaded modules, and (where the
    family makes images from text) it changes the image while scale 0 gives the base's."""
    from deployments.registry import TINY_PREFIX
    from serve_app.core.lora import header_shapes
    from serve_app.lora_repos import FoundAdapter

    repo = ensure_tiny_lora(tmp_path, family)
    card = FoundAdapter("x", repo / WEIGHTS, (repo / "README.md").read_text())
    assert card.card_base_model == f"{TINY_PREFIX}{family}"
    data = (repo / WEIGHTS).read_bytes()
    assert misfits(header_shapes(data), checkpoint_shapes(tmp_path / "tiny" / family)) == []
    pipe = load_pipeline(f"{TINY_PREFIX}{family}", str(tmp_path), "cpu", None,
                         batch_invariant=True)
    cache = AdapterCache(1 << 30, 1 << 30, batch_invariant=True)
    calls = PipelineCalls(FAMILIES[family], 4, "cpu", batch_invariant=True, adapters=cache)
    adapter = ref(data)
    DATA[adapter.sha256] = data
    cache.prepare(pipe, adapter, data, "loras[0].path", 256)
    cache.activate(pipe, [adapter])
    if "text-to-image" not in FAMILIES[family].pipelines:
        return
    base = run(calls, pipe, job("base"))[0]["base"]
    assert run(calls, pipe, job("a", [adapter]))[0]["a"] != base
    assert run(calls, pipe, job("z", [ref(data, 0.0)]))[0]["z"] == base


def test_replicas_that_fuse_qkv_or_quantize_refuse_adapters(flux):
    from deployments.adapters import refusal
    from serve_app.core.config import OptimizationSettings

    pipe, _, _, first, _, _ = flux
    assert refusal(OptimizationSettings()) is None
    for opts in (OptimizationSettings(fuse_qkv=True), OptimizationSettings(quantization="fp8")):
        cache = AdapterCache(1 << 30, 1 << 30, refused=refusal(opts))
        with pytest.raises(LoraIncompatibleError, match="cannot run under"):
            cache.prepare(pipe, ref(first), first, "loras[0].path", 256)


def test_a_kohya_adapter_fits_and_draws_what_its_diffusers_twin_draws(tmp_path):
    """The most common SDXL format on the Hub: kohya names (`lora_unet_…`, alphas), converted
    by the pipeline's own loader, checked against the loaded modules, the same image."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from safetensors.torch import load_file, save

    repo = ensure_tiny_lora(tmp_path, "sdxl")
    peft_named = load_file(repo / WEIGHTS)
    kohya = convert_state_dict_to_kohya({k[len("unet."):]: v for k, v in peft_named.items()})
    # alphas as kohya's trainer stores them: float scalars (diffusers' converter makes int64)
    kohya = {k if k.startswith("lora_unet_") else f"lora_unet_{k}": v.float()
             for k, v in kohya.items()}
    assert all(k.startswith("lora_unet_") for k in kohya)
    pipe = load_pipeline("tessera/tiny-sdxl", str(tmp_path), "cpu", None, batch_invariant=True)
    cache = AdapterCache(1 << 30, 1 << 30, batch_invariant=True)
    calls = PipelineCalls(FAMILIES["sdxl"], 4, "cpu", batch_invariant=True, adapters=cache)
    twin, data = (repo / WEIGHTS).read_bytes(), save(kohya)
    DATA.update({ref(twin).sha256: twin, ref(data).sha256: data})
    cache.prepare(pipe, ref(data), data, "loras[0].path", 256)  # fits: no exception
    from_kohya = run(calls, pipe, job("k", [ref(data)]))[0]["k"]
    assert from_kohya == run(calls, pipe, job("d", [ref(twin)]))[0]["d"]
    assert from_kohya != run(calls, pipe, job("base"))[0]["base"]
