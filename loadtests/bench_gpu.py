"""GPU speed of FLUX.1 at full size: eager bf16, regional compile, fp8 + compile, in one run.

    python -m loadtests.bench_gpu --output /tmp/tessera-bench/gpu \
        [--models schnell dev] [--variants eager compile fp8-compile] [--size 1024] [--runs 5]
    python -m loadtests.bench_gpu --tiny --output DIR   # the same code paths on CPU, tiny model

Builds FLUX.1-schnell and FLUX.1-dev with random weights from their published configurations
(no download: the transformer, T5-XXL, CLIP-L and the VAE at full size, character-level
tokenizers), then runs them through the code a FLUX replica runs: `pick_device` (bf16 on CUDA),
`optimize_pipeline` with the family's `OptimizationSettings`, and `PipelineCalls.run` with real
task requests (one generator per image, VAE tiling threshold, batch-invariant execution when it
is on). The one departure is the load itself: the components are built in memory rather than
read by `from_pretrained` (writing and reading 33 GB of random weights would only time the disk).

Per model and variant: the first calls (compilation, autotuning: the cold start a warm-up
absorbs), p50/p90 seconds per image at batch 1, images/s at batch 1 and 4, peak GPU memory, and
MFU (the pipeline's FLOPs, counted once by PyTorch's FlopCounterMode, over 989 TFLOP/s, the
H100 SXM's dense bf16 peak). It also measures what batch-invariant execution costs at batch 4.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from pathlib import Path

PEAK_BF16_FLOPS = 989e12  # H100 SXM dense bf16

TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                   attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                   pooled_projection_dim=768, axes_dims_rope=[16, 56, 56])
VAE = dict(in_channels=3, out_channels=3, latent_channels=16,
           block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4,
           layers_per_block=2, act_fn="silu", norm_num_groups=32, sample_size=1024,
           scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
           use_post_quant_conv=False, force_upcast=True, mid_block_add_attention=True)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
              num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu",
              projection_dim=768, bos_token_id=0, eos_token_id=1, pad_token_id=1)
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
              relative_attention_max_distance=128, tie_word_embeddings=False,
              decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
SCHEDULERS = {
    "schnell": dict(shift=1.0, use_dynamic_shifting=False),
    "dev": dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                base_image_seq_len=256, max_image_seq_len=4096),
}
STEPS = {"schnell": 4, "dev": 28}
GUIDANCE = {"schnell": 0.0, "dev": 3.5}
VARIANTS = {"eager": {"compile": False}, "compile": {"compile": True},
            "fp8-compile": {"compile": True, "quantization": "fp8"},
            "fp8": {"compile": False, "quantization": "fp8"},
            "cudnn-compile": {"compile": True, "attention_backend": "_native_cudnn"},
            "fused-compile": {"compile": True, "fuse_qkv": True},
            "fp8-fused-compile": {"compile": True, "quantization": "fp8", "fuse_qkv": True},
            "fp8-cudnn-compile": {"compile": True, "quantization": "fp8",
                                  "attention_backend": "_native_cudnn"},
            "compile-tuned": {"compile": True, "inductor_tuning": True, "compile_vae": True},
            "fp8-fused-compile-tuned": {"compile": True, "quantization": "fp8", "fuse_qkv": True,
                                        "inductor_tuning": True, "compile_vae": True},
            "fp8-fused-autotune": {"compile": True, "quantization": "fp8", "fuse_qkv": True,
                                   "inductor_tuning": True, "compile_vae": True,
                                   "compile_mode": "max-autotune-no-cudagraphs"}}


T0 = time.perf_counter()


def say(what: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {what}", flush=True)


def build_transformer(model: str, device: str, dtype):
    import torch
    from diffusers import FluxTransformer2DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # 12B parameters: 48 GB if built in float32 first
    try:
        with torch.device(device):
            model = FluxTransformer2DModel(**TRANSFORMER, guidance_embeds=model == "dev")
    finally:
        torch.set_default_dtype(previous)
    say("transformer built")
    return model.to(dtype)


def build_full(model: str, device: str, dtype):
    """FLUX.1 [model] at full size, random weights, built on the device in its dtype."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from deployments import tiny

    tokenizer, tokenizer_2 = tiny.clip_tokenizer(), tiny.t5_tokenizer()
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in bf16: T5-XXL alone is 19 GB in float32
    try:
        with torch.device(device):
            parts = dict(text_encoder=CLIPTextModel(CLIPTextConfig(vocab_size=49408, **CLIP_L)))
            say("CLIP-L built")
            parts["text_encoder_2"] = T5EncoderModel(T5Config(vocab_size=32128, **T5_XXL))
            say("T5-XXL built")
            parts["vae"] = AutoencoderKL(**VAE)
    finally:
        torch.set_default_dtype(previous)
    say("VAE built")
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULERS[model]),
                        tokenizer=tokenizer, tokenizer_2=tokenizer_2,
                        transformer=build_transformer(model, device, dtype),
                        **{k: v.to(device, dtype) for k, v in parts.items()})


def build_tiny(device: str, dtype):
    from diffusers import FluxPipeline

    from deployments import tiny

    return FluxPipeline(**tiny.flux_components()).to(device, dtype)


def jobs(model: str, batch: int, size: int, steps: int, seed: int):
    from deployments.calls import Job
    from serve_app.core.types import GenerateParams, GenerateRequest

    out = []
    for i in range(batch):
        params = GenerateParams(prompt=f"a lighthouse on a cliff at dusk, take {seed + i}",
                                width=size, height=size, num_inference_steps=steps,
                                guidance_scale=GUIDANCE[model], seeds=[seed + i])
        out.append(Job(GenerateRequest(task_id=f"bench-{seed + i}", tenant="bench",
                                       model=model, created_at=0.0, params=params)))
    return out


def pipeline_flops(calls, pipe, model: str, size: int, steps: int) -> float:
    """FLOPs of one batch-1 pipeline call (matmuls, convolutions, attention), counted once."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        calls.run(pipe, jobs(model, 1, size, steps, 10_000))
    return float(counter.get_total_flops())


def measure(calls, pipe, model: str, size: int, steps: int, runs: int, batches=(1, 4)) -> dict:
    import torch

    from deployments.optimize import timed

    out: dict = {}
    seed = 0
    # first calls per batch size: compilation and autotuning (a new batch size recompiles)
    first = []
    for batch in batches:
        _, seconds = timed(calls.run, pipe, jobs(model, batch, size, steps, seed))
        seed += batch
        first.append(round(seconds, 3))
        say(f"first call at batch {batch}: {seconds:.2f} s")
    out["first_calls_s"] = first
    torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
    for batch in batches:
        times = []
        for _ in range(runs if batch == 1 else max(2, runs // 2)):
            _, seconds = timed(calls.run, pipe, jobs(model, batch, size, steps, seed))
            seed += batch
            times.append(seconds / batch)
        times.sort()
        out[f"batch{batch}"] = {
            "p50_s_per_image": round(statistics.median(times), 4),
            "p90_s_per_image": round(times[min(len(times) - 1, int(0.9 * len(times)))], 4),
            "images_per_s": round(1 / statistics.median(times), 3), "n": len(times)}
    if torch.cuda.is_available():
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def stage_times(calls, pipe, model: str, size: int, steps: int) -> dict:
    """Milliseconds per stage of one batch-1 call (text encoders, each denoiser call summed,
    VAE decode, conversion to images), the device drained around each stage, which adds a
    little to the total."""
    import torch

    from deployments.optimize import timed

    spent: dict[str, float] = {}
    wrapped = [(pipe, "encode_prompt", "text_encode"), (pipe.transformer, "forward", "denoise"),
               (pipe.vae, "decode", "vae_decode"),
               (pipe.image_processor, "postprocess", "postprocess")]
    saved = []
    for obj, name, label in wrapped:
        own = obj.__dict__.get(name)  # an instance attribute (e.g. a compiled function)
        original = getattr(obj, name)

        def run(*a, _original=original, _label=label, **k):
            out, seconds = timed(_original, *a, **k)
            spent[_label] = spent.get(_label, 0.0) + seconds
            return out

        setattr(obj, name, run)
        saved.append((obj, name, own))
    try:
        _, total = timed(calls.run, pipe, jobs(model, 1, size, steps, 20_000))
    finally:
        for obj, name, own in saved:
            if own is None:
                delattr(obj, name)
            else:
                setattr(obj, name, own)
    out = {k: round(v * 1000, 1) for k, v in spent.items()}
    out["total"] = round(total * 1000, 1)
    out["other"] = round(out["total"] - sum(v for k, v in out.items() if k != "total"), 1)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return out


def kernel_ceilings(size: int, device: str, dtype) -> dict:
    """What the H100 reaches on FLUX's own shapes, apart from the pipeline: attention through
    each SDPA backend, and the largest linear layer in bf16 and in fp8 (rowwise scaled_mm).
    TFLOP/s, the mean of 10 runs after 3."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if device != "cuda":
        return {}
    tokens = (size // 16) ** 2 + 256
    q, k, v = (torch.randn(1, 24, tokens, 128, device=device, dtype=dtype) for _ in range(3))

    def tflops(fn, flops: float) -> float:
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            fn()
        end.record()
        torch.cuda.synchronize()
        return round(flops / (start.elapsed_time(end) / 10 / 1000) / 1e12, 1)

    out: dict = {"attention_tokens": tokens}
    attention_flops = 4 * tokens * tokens * 128 * 24
    for name in ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION"):
        try:
            with sdpa_kernel(getattr(SDPBackend, name)):
                out[f"sdpa_{name.lower()}_tflops"] = tflops(
                    lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
                    attention_flops)
        except Exception as exc:  # a backend this build or GPU lacks
            out[f"sdpa_{name.lower()}_tflops"] = f"unavailable: {type(exc).__name__}"
    x = torch.randn(tokens, 3072, device=device, dtype=dtype)
    w = torch.randn(15360, 3072, device=device, dtype=dtype)  # single block: qkv + mlp in
    out["linear_bf16_tflops"] = tflops(lambda: x @ w.t(), 2 * tokens * 3072 * 15360)
    try:
        x8, w8 = x.to(torch.float8_e4m3fn), w.to(torch.float8_e4m3fn)
        sx = torch.ones(tokens, 1, device=device)
        sw = torch.ones(1, 15360, device=device)
        out["linear_fp8_rowwise_tflops"] = tflops(
            lambda: torch._scaled_mm(x8, w8.t(), scale_a=sx, scale_b=sw, out_dtype=dtype),
            2 * tokens * 3072 * 15360)
    except Exception as exc:
        out["linear_fp8_rowwise_tflops"] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    return out


def run_model(model: str, args, device: str, dtype) -> dict:
    import torch

    from deployments.calls import PipelineCalls
    from deployments.invariance import make_batch_invariant
    from deployments.optimize import optimize_pipeline, timed
    from deployments.registry import FAMILIES
    from serve_app.core.config import OptimizationSettings

    spec = FAMILIES["flux"]
    steps = args.steps or STEPS[model]
    t0 = time.perf_counter()
    pipe = build_tiny(device, dtype) if args.tiny else build_full(model, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    say(f"{model} built")
    report: dict = {"model": model, "steps": steps, "size": args.size,
                    "build_s": round(time.perf_counter() - t0, 1), "variants": {}}
    flops = None
    fresh = True  # the transformer has not been compiled or quantized yet
    for name in args.variants:
        if not fresh:  # compile and quantization change the module in place: a new one
            pipe.transformer = None
            gc.collect()
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
            pipe.transformer = (build_tiny(device, dtype).transformer if args.tiny
                                else build_transformer(model, device, dtype))
        opts = OptimizationSettings(**VARIANTS[name], batch_invariant=False).resolved(device)
        calls = PipelineCalls(spec, 4, device, batch_invariant=False, opts=opts)
        applied, optimize_s = timed(optimize_pipeline, pipe, opts, device)
        fresh = not applied
        say(f"{name}: optimized {applied}")
        if flops is None:
            flops = pipeline_flops(calls, pipe, model, args.size, steps)
            report["tflop_per_image"] = round(flops / 1e12, 2)
            say(f"{flops / 1e12:.1f} TFLOP per image")
        result = measure(calls, pipe, model, args.size, steps, args.runs, tuple(args.batches))
        result.update(applied=applied, optimize_s=round(optimize_s, 2),
                      stages_ms=stage_times(calls, pipe, model, args.size, steps))
        say(f"{name}: stages {result['stages_ms']}")
        if device == "cuda":
            result["mfu"] = round(flops / result["batch1"]["p50_s_per_image"] / PEAK_BF16_FLOPS, 3)
        report["variants"][name] = result
        print(json.dumps({name: result}), flush=True)
        Path(args.output, f"partial_{model}.json").write_text(json.dumps(report, indent=2))
    if args.invariance:
        # same pipeline, batch 4: per-sample execution of the position-sensitive layers
        pipe.transformer = None
        gc.collect()
        pipe.transformer = (build_tiny(device, dtype).transformer if args.tiny
                            else build_transformer(model, device, dtype))
        plain = PipelineCalls(spec, 4, device, batch_invariant=False,
                              opts=OptimizationSettings(compile=False).resolved(device))
        off = measure(plain, pipe, model, args.size, steps, args.runs, batches=(4,))
        make_batch_invariant(pipe)
        inv = PipelineCalls(spec, 4, device, batch_invariant=True,
                            opts=OptimizationSettings(compile=False).resolved(device))
        on = measure(inv, pipe, model, args.size, steps, args.runs, batches=(4,))
        report["batch_invariance_eager_batch4"] = {
            "off_images_per_s": off["batch4"]["images_per_s"],
            "on_images_per_s": on["batch4"]["images_per_s"],
            "throughput_cost": round(1 - on["batch4"]["images_per_s"]
                                     / off["batch4"]["images_per_s"], 4)}
        print(json.dumps(report["batch_invariance_eager_batch4"]), flush=True)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", required=True)
    ap.add_argument("--models", nargs="+", default=["schnell", "dev"], choices=list(STEPS))
    ap.add_argument("--variants", nargs="+", default=["eager", "compile", "fp8-compile"],
                    choices=list(VARIANTS))
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=None, help="default: 4 schnell, 28 dev")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--invariance", action="store_true",
                    help="also measure batch-invariant execution at batch 4 (eager)")
    ap.add_argument("--tiny", action="store_true", help="the tiny FLUX (CPU proof of the paths)")
    args = ap.parse_args()
    if args.tiny and args.size == 1024:
        args.size = 256

    import torch

    from deployments.loading import pick_device, quiet_libraries

    quiet_libraries()
    device, dtype = pick_device("auto")
    env = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
           "torch": torch.__version__, "dtype": str(dtype)}
    print(json.dumps(env), flush=True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    env["ceilings"] = kernel_ceilings(args.size, device, dtype)
    print(json.dumps(env["ceilings"]), flush=True)
    reports = []
    for model in args.models:
        reports.append(run_model(model, args, device, dtype))
        # written after each model, so a run stopped at its time limit keeps what it measured
        (out / "bench_gpu.json").write_text(json.dumps({"env": env, "runs": reports}, indent=2))
    lines = ["| model | variant | first calls s (b1, b4) | p50 s/img | p90 s/img | img/s b1 | "
             "img/s b4 | peak GiB | MFU |", "|" + " --- |" * 9]
    for r in reports:
        for name, v in r["variants"].items():
            lines.append(f"| {r['model']} {r['size']}² {r['steps']} steps | {name} | "
                         f"{v['first_calls_s']} | {v['batch1']['p50_s_per_image']} | "
                         f"{v['batch1']['p90_s_per_image']} | {v['batch1']['images_per_s']} | "
                         f"{v.get('batch4', {}).get('images_per_s', '-')} | "
                         f"{v.get('peak_gpu_gib', '-')} | "
                         f"{v.get('mfu', '-')} |")
    (out / "bench_gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
