"""A replica's adapters (`deployments.adapters.cache`): loaded unfused, switched per call,
evicted least recently used, hot-swapped in place, refused where they cannot run, on the real
tiny pipelines with peft-made adapters through the server's own call code."""

from __future__ import annotations

import pytest

from deployments.adapters.cache import AdapterCache, enable_hotswap, refusal
from deployments.adapters.sources import WEIGHTS
from deployments.adapters.tiny import ensure_tiny_lora
from deployments.calls import PipelineCalls
from deployments.loading import load_pipeline
from deployments.registry import FAMILIES
from serve_app.core.config import OptimizationSettings
from serve_app.core.errors import LoraIncompatibleError, LoraInvalidError
from serve_app.core.types import ModelSource
from tests.support.adapters import job, ref, run

pytestmark = pytest.mark.slow


def test_adapters_switch_exactly_and_batch_only_with_equal_sets(flux):
    pipe, calls, cache = flux.pipe, flux.calls, flux.cache
    a, b = ref(flux.first), ref(flux.second)
    base = run(calls, pipe, job("base"))[0]["base"]
    with_a = run(calls, pipe, job("a", [a]))[0]["a"]
    with_b = run(calls, pipe, job("b", [b]))[0]["b"]
    assert len({base, with_a, with_b}) == 3  # each adapter changes the image
    zero = run(calls, pipe, job("z", [ref(flux.first, 0.0)]))[0]["z"]
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
    pipe = load_pipeline(ModelSource(base="tessera/tiny-flux"), str(flux.data_dir), "cpu", None,
                         batch_invariant=True)
    a, b = ref(flux.first), ref(flux.second)
    small = AdapterCache(cpu_bytes=1 << 30, device_bytes=a.size + 1)
    calls = PipelineCalls(FAMILIES["flux"], 4, "cpu", batch_invariant=True, adapters=small)
    run(calls, pipe, job("a", [a]))
    run(calls, pipe, job("b", [b]))
    assert small.loads == 2 and len(pipe.get_list_adapters().get("transformer", [])) <= 2
    # only one fits: b replaced a on the device, so a loads again
    run(calls, pipe, job("a", [a]))
    assert small.loads == 3


def test_an_adapter_for_another_base_or_a_corrupt_one_is_refused(flux):
    import torch
    from safetensors.torch import save

    other = (ensure_tiny_lora(flux.data_dir, "sdxl") / WEIGHTS).read_bytes()
    cache = AdapterCache(1 << 30, 1 << 30)
    with pytest.raises(LoraIncompatibleError) as info:
        cache.prepare(flux.pipe, ref(other), other, "loras[0].path", 256)
    assert info.value.param == "loras[0].path"
    bad = save({"transformer.x.to_q.lora_A.weight": torch.tensor([[float("nan")]]),
                "transformer.x.to_q.lora_B.weight": torch.ones(1, 1)})
    with pytest.raises(LoraInvalidError):
        cache.prepare(flux.pipe, ref(bad), bad, "loras[1].path", 256)
    assert not cache.has(ref(other).sha256)


def test_hot_swapped_adapters_give_the_bytes_of_freshly_loaded_ones(flux):
    """Compiled replicas swap adapters into fixed slots; the same adapter gives the same bytes
    whichever way it arrived (run here uncompiled: the swap itself is what is checked)."""
    a, b = ref(flux.first), ref(flux.second)

    def fresh():
        pipe = load_pipeline(ModelSource(base="tessera/tiny-flux"), str(flux.data_dir), "cpu",
                             None, batch_invariant=True, hotswap_rank=8)
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


def test_replicas_that_fuse_qkv_or_quantize_refuse_adapters(flux):
    assert refusal(OptimizationSettings()) is None
    for opts in (OptimizationSettings(fuse_qkv=True), OptimizationSettings(quantization="fp8")):
        cache = AdapterCache(1 << 30, 1 << 30, refused=refusal(opts))
        with pytest.raises(LoraIncompatibleError, match="cannot run under"):
            cache.prepare(flux.pipe, ref(flux.first), flux.first, "loras[0].path", 256)


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
    pipe = load_pipeline(ModelSource(base="tessera/tiny-sdxl"), str(tmp_path), "cpu", None,
                         batch_invariant=True)
    cache = AdapterCache(1 << 30, 1 << 30, batch_invariant=True)
    calls = PipelineCalls(FAMILIES["sdxl"], 4, "cpu", batch_invariant=True, adapters=cache)
    twin, data = (repo / WEIGHTS).read_bytes(), save(kohya)
    cache.prepare(pipe, ref(data), data, "loras[0].path", 256)  # fits: no exception
    from_kohya = run(calls, pipe, job("k", [ref(data)]))[0]["k"]
    assert from_kohya == run(calls, pipe, job("d", [ref(twin)]))[0]["d"]
    assert from_kohya != run(calls, pipe, job("base"))[0]["base"]
