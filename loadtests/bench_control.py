"""What control images, reference images and upscaling cost: a ControlNet step over a plain
step, a reference call over a plain call, preparing a control image (and again from the cache),
and the upscalers' seconds per megapixel.

    python -m loadtests.bench_control --output /tmp/tessera-bench/control [--repeats 5]
    python -m loadtests.bench_control --device cuda --output /tmp/tessera-bench/control-gpu

On the CPU (default): the tiny FLUX, SDXL, SD 3.5 and Qwen-Image at 256², 4 steps, through
the family server's own call code (`PipelineCalls` with its `Conditioning`), plain and with
their tiny ControlNet (a control image prepared once and cached, as the replica does), and
FLUX with its tiny Redux prior, SDXL with its tiny IP-Adapter; the tiny Swin2SR (x2) and SD x4
upscaler, and Swin2SR at its real size (the x2 classical checkpoint's layout, 12 M parameters,
random weights), each on an input larger than one tile. The tiny models' ratios say what the
code around the models adds; their sizes are not the real ones.

With `--device cuda` (the deployment image: diffusers installed): the real-size denoisers with
random weights in bfloat16, one denoising step at 1024²: the FLUX.1 transformer alone and with a
union ControlNet of InstantX's size (5 double, 10 single blocks), the SDXL UNet alone and with a
ControlNet made from it (`from_unet`); Swin2SR at its real size and the SD x4 upscaler's UNet
and VAE on 512² inputs, seconds per output megapixel.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from loadtests.common import out_dir, p50_ms, write_report

SIZE, STEPS = 256, 4
CONTROL_FAMILIES = ("flux", "sdxl", "sd3", "qwen-image")


def card(size: int):
    """A control or reference image with edges in it."""
    import numpy as np
    from PIL import Image

    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:] = (200, 40, 30)
    pixels[size // 4:size // 2, size // 5:size * 3 // 5] = 255
    return Image.fromarray(pixels)


def cpu_run(repeats: int) -> dict:
    from deployments.loading import quiet_libraries

    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-control-"))
    out: dict = {"device": "cpu", "size": f"{SIZE}²", "steps": STEPS, "controlnet": {},
                 "reference": {}, "prepare": {}}
    for family in CONTROL_FAMILIES:
        family_rows(family, work, repeats, out)
    out["upscale"] = upscale_cpu(work, repeats)
    return out


def tiny_job(family: str, image, **fields):
    from deployments.calls import Job
    from deployments.registry import FAMILIES
    from serve_app.core.types import GenerateParams, GenerateRequest

    spec = FAMILIES[family].tiny_parameters
    params = GenerateParams(prompt="a red fox", width=SIZE, height=SIZE,
                            num_inference_steps=STEPS, guidance_scale=spec.guidance_scale,
                            seeds=[1], **fields)
    made = Job(GenerateRequest(task_id="bench", tenant="bench", model="bench", created_at=0.0,
                               params=params))
    made.controls = [image] * len(params.controlnets)
    made.references = [image] * len(params.reference_images)
    return made


def tiny_control(family: str, **fields):
    from serve_app.core.types import ControlRef, ModelSource

    name = f"tessera/tiny-{family}-controlnet"
    return ControlRef(path=name, source=ModelSource(base=name), image_key="bench",
                      **{"image_sha256": "bench", **fields})


def family_rows(family: str, work: Path, repeats: int, out: dict) -> None:
    """One family's plain, ControlNet and reference calls, into `out`."""
    from deployments.calls import PipelineCalls
    from deployments.conditioning import Conditioning
    from deployments.helpers import TINY_DEPTH, TINY_REFERENCE
    from deployments.loading import load_pipeline
    from deployments.registry import FAMILIES
    from serve_app.core.types import ModelSource, ReferenceRef

    spec = FAMILIES[family]
    image = card(SIZE)
    base = load_pipeline(ModelSource(base=f"tessera/tiny-{family}"), str(work), "cpu", None,
                         True, spec=spec)
    cond = Conditioning(spec, str(work), work / "models", "cpu", None)
    calls = PipelineCalls(spec, 4, "cpu", conditioning=cond)
    plain = p50_ms(lambda: calls.run(base, [tiny_job(family, image)]), repeats)
    steered = p50_ms(lambda: calls.run(base, [tiny_job(
        family, image, controlnets=[tiny_control(family)])]), repeats)
    out["controlnet"][family] = {
        "plain_call_ms": plain, "controlnet_call_ms": steered,
        "plain_step_ms": round(plain / STEPS, 2), "controlnet_step_ms": round(steered / STEPS, 2),
        "controlnet_over_plain": round(steered / plain, 3)}
    if spec.reference:
        ref = dict(reference_images=[ReferenceRef(image_key="bench", image_sha256="bench")],
                   reference_model=ModelSource(base=TINY_REFERENCE[family]))
        referenced = p50_ms(lambda: calls.run(base, [tiny_job(family, image, **ref)]), repeats)
        out["reference"][family] = {"kind": spec.reference, "plain_call_ms": plain,
                                    "reference_call_ms": referenced,
                                    "reference_over_plain": round(referenced / plain, 3)}
    if family != "flux":
        return
    for preprocess in ("canny", "depth"):
        fresh = iter(range(10 ** 6))  # a new content hash each time: not in the cache

        def prepare(new: bool, preprocess=preprocess, fresh=fresh) -> None:
            ref = tiny_control(family, preprocess=preprocess,
                               depth_model=TINY_DEPTH if preprocess == "depth" else None,
                               image_sha256=f"fresh-{next(fresh)}" if new else "bench")
            cond.prepared(image, ref, SIZE, SIZE)

        out["prepare"][preprocess] = {"first_ms": p50_ms(lambda p=prepare: p(True), repeats),
                                      "cached_ms": p50_ms(lambda p=prepare: p(False), repeats)}


def upscale_cpu(work: Path, repeats: int) -> dict:
    from deployments.calls import Job, PipelineCalls
    from deployments.loading import load_pipeline
    from deployments.registry import FAMILIES
    from deployments.upscale import Swin2SRUpscaler, upscaled
    from serve_app.core.types import GenerateParams, GenerateRequest, ModelSource

    rows = {}
    for family, size in (("swin2sr", (384, 320)), ("sd-upscaler", (160, 128))):
        spec = FAMILIES[family]
        p = spec.tiny_parameters
        model = load_pipeline(ModelSource(base=f"tessera/tiny-{family}"), str(work), "cpu",
                              None, False, spec=spec)
        calls = PipelineCalls(spec, 1, "cpu", batch_invariant=False)
        params = GenerateParams(task="upscale", prompt="", width=size[0] * p.upscale_factor,
                                height=size[1] * p.upscale_factor,
                                num_inference_steps=p.num_inference_steps,
                                guidance_scale=p.guidance_scale, seeds=[1],
                                upscale=p.upscale_factor)
        job = Job(GenerateRequest(task_id="bench", tenant="bench", model="bench",
                                  created_at=0.0, params=params))
        job.images = [card(max(size)).crop((0, 0, *size))]
        ms = p50_ms(lambda job=job, calls=calls, model=model: calls.run(model, [job]), repeats)
        rows[f"tiny {family}"] = per_megapixel(ms, size, p.upscale_factor)
    # Swin2SR at its real size (caidas/swin2SR-classical-sr-x2-64's layout), one 128² tile
    real = Swin2SRUpscaler(real_swin2sr(), swin2sr_processor())
    small = card(128)
    ms = p50_ms(lambda: upscaled(small, 2, lambda tiles: real(image=tiles).images),
                max(1, repeats // 2))
    rows["Swin2SR x2, real size"] = per_megapixel(ms, small.size, 2)
    return rows


def per_megapixel(ms: float, size: tuple[int, int], factor: int) -> dict:
    out_mp = size[0] * factor * size[1] * factor / 1e6
    return {"input": f"{size[0]}x{size[1]}", "factor": factor, "call_ms": ms,
            "s_per_output_megapixel": round(ms / 1000 / out_mp, 3),
            "s_per_input_megapixel": round(ms / 1000 / (size[0] * size[1] / 1e6), 3)}


def real_swin2sr(dtype=None):
    import torch
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution

    torch.manual_seed(0)
    model = Swin2SRForImageSuperResolution(Swin2SRConfig(
        upscale=2, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8,
        image_size=64, upsampler="pixelshuffle", img_range=1.0, resi_connection="1conv"))
    return (model.to(dtype) if dtype is not None else model).eval()


def swin2sr_processor():
    from transformers import Swin2SRImageProcessor

    return Swin2SRImageProcessor(pad_size=8)


def cuda_run(repeats: int) -> dict:
    """Real-size denoisers with random weights, one step at 1024², bfloat16."""
    import torch

    out: dict = {"device": torch.cuda.get_device_name(), "size": "1024²",
                 "controlnet": {"flux": flux_cuda(repeats)}, "upscale": {}}
    torch.cuda.empty_cache()
    out["controlnet"]["sdxl"] = sdxl_cuda(repeats)
    torch.cuda.empty_cache()
    with torch.inference_mode():
        swin = real_swin2sr(torch.bfloat16).to("cuda")
        tile = torch.rand(4, 3, 256, 256, device="cuda", dtype=torch.bfloat16)
        ms = p50_ms(lambda: swin(pixel_values=tile), repeats, torch.cuda.synchronize)
    out["upscale"]["Swin2SR x2, real size, 4 tiles of 256²"] = {
        "call_ms": ms, "s_per_output_megapixel": round(ms / 1000 / (4 * 512 * 512 / 1e6), 3)}
    return out


def flux_cuda(repeats: int) -> dict:
    """The FLUX.1 transformer's step alone, and with a union ControlNet of InstantX's size."""
    import torch
    from diffusers import FluxControlNetModel, FluxTransformer2DModel

    dev, dt = "cuda", torch.bfloat16
    torch.manual_seed(0)
    flux = FluxTransformer2DModel(guidance_embeds=True).to(dev, dt)
    control = FluxControlNetModel(num_layers=5, num_single_layers=10, guidance_embeds=True,
                                  num_mode=10).to(dev, dt)
    tokens, text = 4096, 512  # 1024² latents in 2x2 patches; T5 tokens
    x = torch.randn(1, tokens, 64, device=dev, dtype=dt)
    cond = torch.randn(1, tokens, 64, device=dev, dtype=dt)
    kw = dict(encoder_hidden_states=torch.randn(1, text, 4096, device=dev, dtype=dt),
              pooled_projections=torch.randn(1, 768, device=dev, dtype=dt),
              timestep=torch.tensor([0.5], device=dev, dtype=dt),
              guidance=torch.tensor([3.5], device=dev, dtype=dt),
              img_ids=torch.zeros(tokens, 3, device=dev, dtype=dt),
              txt_ids=torch.zeros(text, 3, device=dev, dtype=dt), return_dict=False)

    def plain():
        flux(hidden_states=x, **kw)

    def steered():
        blocks, singles = control(hidden_states=x, controlnet_cond=cond,
                                  controlnet_mode=torch.tensor([[0]], device=dev),
                                  conditioning_scale=1.0, **kw)
        flux(hidden_states=x, controlnet_block_samples=blocks,
             controlnet_single_block_samples=singles, **kw)

    with torch.inference_mode():
        return ratio(p50_ms(plain, repeats, torch.cuda.synchronize),
                     p50_ms(steered, repeats, torch.cuda.synchronize))


def sdxl_cuda(repeats: int) -> dict:
    """The SDXL UNet's step (classifier-free guidance: a batch of 2) alone, and with a
    ControlNet made from it."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    dev, dt = "cuda", torch.bfloat16
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816, use_linear_projection=True).to(dev, dt)
    control = ControlNetModel.from_unet(unet).to(dev, dt)
    batch = 2
    sample = torch.randn(batch, 4, 128, 128, device=dev, dtype=dt)
    kw = dict(timestep=torch.tensor([500], device=dev),
              encoder_hidden_states=torch.randn(batch, 77, 2048, device=dev, dtype=dt),
              added_cond_kwargs={"text_embeds": torch.randn(batch, 1280, device=dev, dtype=dt),
                                 "time_ids": torch.randn(batch, 6, device=dev, dtype=dt)},
              return_dict=False)
    image = torch.randn(batch, 3, 1024, 1024, device=dev, dtype=dt)

    def plain():
        unet(sample, **kw)

    def steered():
        down, mid = control(sample, controlnet_cond=image, conditioning_scale=1.0, **kw)
        unet(sample, down_block_additional_residuals=down, mid_block_additional_residual=mid,
             **kw)

    with torch.inference_mode():
        return ratio(p50_ms(plain, repeats, torch.cuda.synchronize),
                     p50_ms(steered, repeats, torch.cuda.synchronize))


def ratio(plain: float, steered: float) -> dict:
    return {"plain_step_ms": plain, "controlnet_step_ms": steered,
            "controlnet_over_plain": round(steered / plain, 3)}


def markdown(report: dict) -> str:
    lines = [f"device: {report['device']}, {report['size']}"]
    for family, row in report["controlnet"].items():
        lines.append(f"- {family}: a ControlNet step {row['controlnet_step_ms']} ms over a "
                     f"plain step {row['plain_step_ms']} ms = x{row['controlnet_over_plain']}")
    for family, row in report.get("reference", {}).items():
        lines.append(f"- {family} with a reference image ({row['kind']}): "
                     f"x{row['reference_over_plain']} of the plain call")
    for name, row in report.get("prepare", {}).items():
        lines.append(f"- preparing a control image ({name}): {row['first_ms']} ms, from the "
                     f"cache {row['cached_ms']} ms")
    for name, row in report["upscale"].items():
        lines.append(f"- {name}: {row['s_per_output_megapixel']} s per output megapixel")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=out_dir("control"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    report = cuda_run(args.repeats) if args.device == "cuda" else cpu_run(args.repeats)
    write_report(args.output, "control", report, markdown(report))


if __name__ == "__main__":
    main()
