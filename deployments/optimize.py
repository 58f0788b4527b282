"""Making a loaded pipeline fast on its device, per the family's `OptimizationSettings`.

Applied once after a model loads, in this order, because each step sees what the previous made:
the attention projections are fused (one matrix product for q, k and v), fp8 quantization
replaces the denoiser's linear weights (torchao), the attention backend is chosen
through diffusers' dispatcher, and the denoiser's repeated blocks are compiled last, so the
compiled graphs hold the quantized matmuls and the chosen attention. Regional compilation
compiles one transformer block and reuses it for every instance, so a cold start costs seconds,
not the minutes a whole-model compile takes. The warm-up runs one short call so that the
compilation (and cuDNN/cuBLAS autotuning) happens before a user's first request.

Blocking code: the server calls it in a thread. torch, diffusers and torchao are imported inside
functions.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from serve_app.core.config import OptimizationSettings

logger = logging.getLogger("tessera.family")


def denoiser(pipe) -> Any:
    """The pipeline's denoising network (a transformer, or an SDXL-style UNet)."""
    return getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)


def quantize_fp8(model) -> None:
    """Dynamic float8 (e4m3) activations and weights, per row, for every linear layer."""
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        PerRow,
        quantize_,
    )

    quantize_(model, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))


def compile_denoiser(model, mode: str = "default") -> str:
    """Regional compilation where the model names its repeated blocks, else the whole model."""
    if getattr(model, "_repeated_blocks", None):
        model.compile_repeated_blocks(fullgraph=True, mode=mode)
        return "repeated_blocks"
    model.compile(fullgraph=False, mode=mode)
    return "whole"


def tune_inductor() -> None:
    """Inductor settings that pay for diffusion models (the PyTorch team's flux-fast recipe):
    coordinate-descent tuning of each generated kernel's launch shape, 1x1 convolutions lowered
    to matrix products, and no epilogue fusion, which otherwise keeps a matmul from cuBLAS."""
    import torch._inductor.config as inductor

    inductor.conv_1x1_as_mm = True
    inductor.coordinate_descent_tuning = True
    inductor.coordinate_descent_check_all_directions = True
    inductor.epilogue_fusion = False


def compile_vae_decoder(pipe) -> bool:
    """The VAE's decoder compiled, its convolutions in channels-last layout (what cuDNN's
    fastest kernels read). Tiled decoding calls the same decoder on tiles: one more shape."""
    import torch

    vae = getattr(pipe, "vae", None)
    decoder = getattr(vae, "decoder", None)
    if decoder is None:
        return False
    vae.to(memory_format=torch.channels_last)
    decoder.compile(fullgraph=False)
    return True


def optimize_pipeline(pipe, opts: OptimizationSettings, device: str) -> dict[str, Any]:
    """Apply the (device-resolved) settings to `pipe` in place; what was applied, for the log
    and the benchmark."""
    model = denoiser(pipe)
    applied: dict[str, Any] = {}
    if model is None:
        return applied
    if opts.fuse_qkv and hasattr(model, "fuse_qkv_projections"):
        model.fuse_qkv_projections()  # before fp8: the fused product is what gets quantized
        applied["fuse_qkv"] = True
    if opts.quantization == "fp8":
        if device == "cuda":
            quantize_fp8(model)
            applied["quantization"] = "fp8"
        else:  # torchao's float8 kernels need CUDA (compute capability 8.9+)
            logger.warning("quantization fp8 needs CUDA; running %s unquantized on %s",
                           type(model).__name__, device)
    if opts.attention_backend:
        model.set_attention_backend(opts.attention_backend)
        applied["attention_backend"] = opts.attention_backend
    if opts.inductor_tuning and (opts.compile or opts.compile_vae):
        tune_inductor()
        applied["inductor_tuning"] = True
    if opts.compile:
        applied["compile"] = compile_denoiser(model, opts.compile_mode)
        if opts.compile_mode != "default":
            applied["compile_mode"] = opts.compile_mode
    if opts.compile_vae and compile_vae_decoder(pipe):
        applied["compile_vae"] = True
    return applied


def set_vae_tiling(pipe, pixels: int, min_pixels: int | None) -> None:
    """Tile the VAE for this call when the output is large enough to need it."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return
    if min_pixels is not None and pixels >= min_pixels:
        vae.enable_tiling()
    else:
        vae.disable_tiling()


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """fn's result and its wall time in seconds, the device's queue drained on both sides."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - t0
