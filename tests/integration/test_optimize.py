"""The GPU optimisation paths, proven on CPU with the tiny FLUX: regional compilation, the
warm-up, VAE tiling above a size, and fp8 asked for where it cannot run. The same code runs on
CUDA in `loadtests.bench_gpu` (its H100 figures are in the README)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deployments.calls import Job, PipelineCalls
from deployments.loading import load_pipeline
from deployments.optimize import optimize_pipeline
from deployments.registry import FAMILIES
from serve_app.core.config import OptimizationSettings
from serve_app.core.types import GenerateParams, GenerateRequest, ModelSource

SOURCE = ModelSource(base="tessera/tiny-flux")


def job(seed: int, size: int = 128) -> Job:
    params = GenerateParams(prompt=f"a red fox {seed}", width=size, height=size,
                            num_inference_steps=2, guidance_scale=3.5, seeds=[seed])
    return Job(GenerateRequest(task_id=f"t{seed}", tenant="x", model="tessera/tiny-flux",
                               created_at=0.0,
                               params=params))


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.float32) for im in images])


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("data"))
    opts = OptimizationSettings(compile=False).resolved("cpu")
    pipe = load_pipeline(SOURCE, data, "cpu", torch.float32, False, opts)
    return data, pipe, PipelineCalls(FAMILIES["flux"], 4, "cpu", False, opts)


def test_regional_compile_and_warm_up_give_the_eager_images(eager):
    data, eager_pipe, eager_calls = eager
    opts = OptimizationSettings(compile=True, warmup=True).resolved("cpu")
    pipe = load_pipeline(SOURCE, data, "cpu", torch.float32, False, opts)
    blocks = pipe.transformer.transformer_blocks
    # compile_repeated_blocks compiles each repeated block in place, not the whole model
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in blocks)
    assert getattr(pipe.transformer, "_compiled_call_impl", None) is None
    calls = PipelineCalls(FAMILIES["flux"], 4, "cpu", False, opts)
    assert calls.warm_up(pipe, SOURCE) > 0
    compiled = pixels(calls.run(pipe, [job(1), job(2)]))
    reference = pixels(eager_calls.run(eager_pipe, [job(1), job(2)]))
    assert compiled.shape == reference.shape == (2, 128, 128, 3)
    # compiled kernels fuse and reorder float arithmetic: the same image, not the same bits
    assert np.abs(compiled - reference).mean() < 1.0
    assert np.abs(compiled - pixels(eager_calls.run(eager_pipe, [job(3)]))).mean() > 5


def test_fused_qkv_projections_give_the_same_image(eager, tmp_path):
    data, eager_pipe, eager_calls = eager
    opts = OptimizationSettings(fuse_qkv=True).resolved("cpu")
    pipe = load_pipeline(SOURCE, data, "cpu", torch.float32, False, opts)
    assert pipe.transformer.transformer_blocks[0].attn.fused_projections
    fused = pixels(PipelineCalls(FAMILIES["flux"], 4, "cpu", False, opts).run(pipe, [job(8)]))
    reference = pixels(eager_calls.run(eager_pipe, [job(8)]))
    assert np.abs(fused - reference).mean() < 1.0  # one product instead of three: same image


def test_vae_tiles_from_the_configured_size(eager):
    _, pipe, _ = eager
    calls = PipelineCalls(FAMILIES["flux"], 4, "cpu", False,
                          OptimizationSettings(vae_tiling_min_pixels=256 * 256))
    calls.run(pipe, [job(1, size=256)])
    assert pipe.vae.use_tiling
    calls.run(pipe, [job(1, size=128)])
    assert not pipe.vae.use_tiling


def test_fp8_on_cpu_runs_unquantized(eager, caplog):
    _, pipe, calls = eager
    applied = optimize_pipeline(pipe, OptimizationSettings(quantization="fp8").resolved("cpu"),
                                "cpu")
    assert "quantization" not in applied
    assert "needs CUDA" in caplog.text
    assert isinstance(pipe.transformer.transformer_blocks[0].ff.net[2].weight, torch.nn.Parameter)
    assert len(calls.run(pipe, [job(4)])) == 1


def test_defaults_per_device():
    cpu = OptimizationSettings().resolved("cpu")
    cuda = OptimizationSettings().resolved("cuda")
    assert (cpu.compile, cpu.warmup, cpu.batch_invariant) == (False, False, True)
    assert (cuda.compile, cuda.warmup, cuda.batch_invariant) == (True, True, False)
    assert OptimizationSettings(batch_invariant=True).resolved("cuda").batch_invariant


def test_tuned_inductor_and_compiled_vae_give_the_eager_image(eager):
    import torch._inductor.config as inductor

    data, eager_pipe, eager_calls = eager
    keys = ("conv_1x1_as_mm", "coordinate_descent_tuning",
            "coordinate_descent_check_all_directions", "epilogue_fusion")
    before = {k: getattr(inductor, k) for k in keys}
    try:
        opts = OptimizationSettings(compile_vae=True, inductor_tuning=True).resolved("cpu")
        pipe = load_pipeline(SOURCE, data, "cpu", torch.float32, False, opts)
        assert getattr(pipe.vae.decoder, "_compiled_call_impl", None) is not None
        assert pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert (inductor.coordinate_descent_tuning, inductor.epilogue_fusion) == (True, False)
        tuned = pixels(PipelineCalls(FAMILIES["flux"], 4, "cpu", False, opts).run(pipe, [job(5)]))
    finally:
        for k, v in before.items():  # process-wide: the other tests compile untuned
            setattr(inductor, k, v)
    reference = pixels(eager_calls.run(eager_pipe, [job(5)]))
    assert tuned.shape == reference.shape == (1, 128, 128, 3)
    assert np.abs(tuned - reference).mean() < 1.0


def test_images_convert_to_8_bits_as_diffusers_does():
    from diffusers.image_processor import VaeImageProcessor

    from deployments.calls import pil_images

    processor = VaeImageProcessor(vae_scale_factor=16)
    decoded = torch.rand(3, 3, 40, 24) * 2 - 1
    decoded[0, 0, 0, :4] = torch.tensor([-1.0, 1.0, 0.5 / 255 * 2 - 1, 1.5 / 255 * 2 - 1])
    ours = pil_images(processor.postprocess(decoded, output_type="pt"))
    theirs = processor.postprocess(decoded, output_type="pil")
    assert [im.size for im in ours] == [(24, 40)] * 3
    pairs = zip(ours, theirs, strict=True)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in pairs)
    assert pil_images(theirs) == theirs  # a pipeline that answers PIL is passed through
