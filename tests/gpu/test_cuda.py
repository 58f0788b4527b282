"""On CUDA (skipped without it): the tiny pipeline in bfloat16, and batch invariance there."""

from __future__ import annotations

import pytest

from deployments.calls import Job
from deployments.registry import FAMILIES
from tests.support.batch_check import load, params, runner


@pytest.mark.gpu
def test_same_bytes_alone_or_in_a_batch_on_cuda(tmp_path):
    """The same check on a GPU in bfloat16, where cuBLAS also picks kernels by shape."""
    import torch

    from tests.support.batch_check import compare

    spec = FAMILIES["flux"]
    r = runner(spec)
    r.device = "cuda"
    pipe = load(spec, str(tmp_path), device="cuda", dtype=torch.bfloat16)
    tasks = [params(i, prompt, [i + 1]) for i, prompt in enumerate(("a fox", "a boat", "x"))]
    result = compare(r, pipe, [Job(p, None) for p in tasks])
    assert result["groups"] == 1 and result["mismatched"] == [], result


@pytest.mark.gpu
def test_tiny_flux_on_cuda_bf16(tmp_path):
    import torch
    from diffusers import DiffusionPipeline

    from deployments.registry import FAMILIES

    FAMILIES["flux"].build_tiny(str(tmp_path))
    pipe = DiffusionPipeline.from_pretrained(str(tmp_path), dtype=torch.bfloat16).to("cuda")
    image = pipe(prompt="p", width=128, height=96, num_inference_steps=2,
                 generator=torch.Generator("cpu").manual_seed(0)).images[0]
    assert image.size == (128, 96)
