"""What the safety checker costs: its time per image, and its share of a task's time.

    python -m loadtests.bench_safety --output /tmp/tessera-bench/safety [--repeats 7]
    python -m loadtests.bench_safety --device cuda --output /tmp/tessera-bench/safety-gpu

On the CPU (default): the tiny FLUX at 256², 4 steps, through the family server's own call
code (`PipelineCalls`), against the checker as the replica runs it (`SafetyChecker.verdict`, the
classifier's processor included) for the tiny checker and for a classifier of the real size
(ViT-base at 224², as Falconsai/nsfw_image_detection, with random weights: no download), one
image and four at a time. Each share is checker / (pipeline call + checker), p50s of the same
run.

With `--device cuda`: the ViT-base checker in bfloat16 on the GPU, on 1024² images, against a
FLUX.1-schnell 1024² image (4 steps) measured on an H100 by `loadtests.bench_gpu`
(`loadtests/results/bench_gpu_schnell_h100.json`, eager, per image at batch 1 and 4), or the
seconds given with `--flux-s`. The goal there: at most 2% of the image.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from loadtests.common import out_dir, p50_ms, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "bench_gpu_schnell_h100.json"


def vit_base(path: Path) -> None:
    """A ViT-base image classifier (Falconsai/nsfw_image_detection's shape), random weights."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    labels = {0: "normal", 1: "nsfw"}
    ViTForImageClassification(ViTConfig(
        image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
        num_attention_heads=12, intermediate_size=3072, id2label=labels,
        label2id={v: k for k, v in labels.items()})).save_pretrained(str(path))
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(str(path))


def checker(name: str, source: str, device: str, dtype):
    from deployments.safety import SafetyChecker
    from serve_app.core.config import SafetySettings

    return SafetyChecker(SafetySettings(checker=name), source, device, dtype)


def cpu_run(repeats: int) -> dict:
    from deployments.calls import Job, PipelineCalls
    from deployments.loading import load_pipeline, quiet_libraries
    from deployments.registry import FAMILIES
    from deployments.safety import TINY_CHECKER, checker_source
    from serve_app.core.config import SafetySettings
    from serve_app.core.types import GenerateParams, GenerateRequest, ModelSource

    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-safety-"))
    pipe = load_pipeline(ModelSource(base="tessera/tiny-flux"), str(work), "cpu", None,
                         batch_invariant=True)
    calls = PipelineCalls(FAMILIES["flux"], 4, "cpu", batch_invariant=True)
    vit_base(work / "vit-base")
    checkers = {
        "tiny checker": checker(TINY_CHECKER, checker_source(
            SafetySettings(checker=TINY_CHECKER), work, work / "models"), "cpu", None),
        "ViT-base (224²)": checker("vit-base", str(work / "vit-base"), "cpu", None)}
    out: dict = {"device": "cpu", "pipeline": "tessera/tiny-flux 256², 4 steps", "runs": {}}
    for n in (1, 4):
        params = GenerateParams(prompt="a red fox", width=256, height=256,
                                num_inference_steps=4, guidance_scale=3.5,
                                seeds=list(range(n)))
        job = Job(GenerateRequest(task_id="bench", tenant="bench", model="bench",
                                  created_at=0.0, params=params))
        images = calls.run(pipe, [job])
        call_ms = p50_ms(lambda job=job: calls.run(pipe, [job]), repeats, lambda: None)
        row = {"pipeline_call_ms": call_ms}
        for name, c in checkers.items():
            ms = p50_ms(lambda c=c, images=images: c.verdict(images), repeats, lambda: None)
            row[name] = {"checker_ms": ms, "per_image_ms": round(ms / n, 2),
                         "share": round(ms / (call_ms + ms), 4)}
        out["runs"][f"{n} image(s)"] = row
    # what a GPU run spends on the CPU: the processor shrinking FLUX-sized images to 224²
    from PIL import Image

    big = [Image.new("RGB", (1024, 1024), (i * 40, 90, 200)) for i in range(4)]
    processor = checkers["ViT-base (224²)"].processor
    ms = p50_ms(lambda: processor(images=big, return_tensors="pt"), repeats, lambda: None)
    out["vit_base_preprocess_1024_ms_per_image"] = round(ms / len(big), 2)
    return out


def cuda_run(repeats: int, flux_s: dict[int, float] | None) -> dict:
    import torch
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-safety-"))
    vit_base(work / "vit-base")
    c = checker("vit-base", str(work / "vit-base"), "cuda", torch.bfloat16)
    if flux_s is None:
        run = json.loads(RESULTS.read_text())["runs"][0]["variants"]["eager"]
        flux_s = {1: run["batch1"]["p50_s_per_image"], 4: run["batch4"]["p50_s_per_image"]}
    out: dict = {"device": torch.cuda.get_device_name(), "checker": "ViT-base bf16, 1024² in",
                 "flux_schnell_1024_s_per_image": flux_s, "runs": {}}
    for n in (1, 4):
        images = [Image.new("RGB", (1024, 1024), (i * 40, 90, 200)) for i in range(n)]
        ms = p50_ms(lambda images=images: c.verdict(images), repeats, torch.cuda.synchronize)
        per_image = ms / n
        out["runs"][f"{n} image(s)"] = {
            "checker_ms": ms, "per_image_ms": round(per_image, 2),
            "share_of_flux_image": round(per_image / 1000 / (flux_s[n] + per_image / 1000), 4)}
    return out


def markdown(report: dict) -> str:
    lines = [f"device: {report['device']}"]
    if "vit_base_preprocess_1024_ms_per_image" in report:
        lines.append("- ViT-base's processor on a 1024² image: "
                     f"{report['vit_base_preprocess_1024_ms_per_image']} ms")
    for batch, row in report["runs"].items():
        if report["device"] == "cpu":
            for name in (k for k in row if k != "pipeline_call_ms"):
                r = row[name]
                lines.append(f"- {batch}, {name}: {r['checker_ms']} ms "
                             f"({r['per_image_ms']} ms an image), {r['share']:.2%} of the task "
                             f"(pipeline call {row['pipeline_call_ms']} ms)")
        else:
            lines.append(f"- {batch}: {row['checker_ms']} ms ({row['per_image_ms']} ms an "
                         f"image), {row['share_of_flux_image']:.2%} of a FLUX.1-schnell image")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=out_dir("safety"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--flux-s", type=float, nargs=2, metavar=("BATCH1", "BATCH4"),
                        help="FLUX.1-schnell 1024² seconds per image at batch 1 and 4")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        flux = dict(zip((1, 4), args.flux_s, strict=True)) if args.flux_s else None
        report = cuda_run(args.repeats, flux)
    else:
        report = cpu_run(args.repeats)
    write_report(args.output, "safety", report, markdown(report))


if __name__ == "__main__":
    main()
