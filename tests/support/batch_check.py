"""Alone against batched, in one process whose CPU kernels are fixed by ATEN_CPU_CAPABILITY.

PyTorch picks its CPU kernels once per process (`default`, `avx2`, `avx512`), so the batching
tests run this module once per capability the machine supports:

    ATEN_CPU_CAPABILITY=avx2 python -m tests.support.batch_check --tiny-dir D --out F.json

It writes, for that capability: each position-sensitive function's result per sample (alone, at
every position of a batch, with and without the invariant mode), and each family's tiny
pipeline, every task made alone and in a batch, through the replica's own grouping and call
code (`batch_groups`, `call_kwargs`, `_run_pipeline`).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Callable

from deployments.calls import Job, PipelineCalls
from deployments.outputs import encode_image
from serve_app.core.types import GenerateParams, GenerateRequest


def runner(spec, max_batch_images: int = 8) -> PipelineCalls:
    """The replica's batching code without a replica: same grouping and pipeline call."""
    return PipelineCalls(spec, max_batch_images, "cpu", batch_invariant=True)


def params(i: int, prompt: str, seeds: list[int], **more) -> GenerateRequest:
    """Task t<i>'s request."""
    fields = dict(prompt=prompt, width=64, height=64, num_inference_steps=2, guidance_scale=3.5,
                  seeds=seeds)
    return GenerateRequest(task_id=f"t{i}", tenant="a", model="m", created_at=0.0,
                           params=GenerateParams(**(fields | more)))


def run(r: PipelineCalls, pipe, jobs: list[Job]) -> dict[str, list[bytes]]:
    """PNG bytes per task, running the jobs grouped as the replica groups them."""
    out: dict[str, list[bytes]] = {}
    for group in r.batch_groups(jobs):
        images = r.run(pipe, group)
        for job in group:
            k = len(job.params.seeds)
            out[job.task_id] = [encode_image(im, "png") for im in images[:k]]
            images = images[k:]
    return out


def load(spec, tiny_dir: str, device: str = "cpu", dtype=None):
    from diffusers import DiffusionPipeline

    from deployments.invariance import make_batch_invariant
    from deployments.loading import ensure_tiny_checkpoint

    kwargs = {"dtype": dtype} if dtype is not None else {}
    pipe = DiffusionPipeline.from_pretrained(str(ensure_tiny_checkpoint(tiny_dir, spec)),
                                             **kwargs).to(device)
    pipe.set_progress_bar_config(disable=True)
    return make_batch_invariant(pipe)


def compare(r: PipelineCalls, pipe, jobs: list[Job]) -> dict:
    """Every task alone against the batch, in the given order and reversed (other positions)."""
    mismatched = set()
    alone = {job.task_id: run(r, pipe, [job])[job.task_id] for job in jobs}
    for order in (jobs, jobs[::-1]):
        batched = run(r, pipe, order)
        mismatched |= {t for t, pngs in alone.items() if batched[t] != pngs}
    return {"groups": len(r.batch_groups(jobs)), "mismatched": sorted(mismatched),
            "distinct_seeds_differ": all(len(set(p)) == len(p) for p in alone.values())}


def family_check(name: str, tiny_dir: str) -> dict:
    from deployments.registry import FAMILIES

    spec = FAMILIES[name]
    r, pipe = runner(spec), load(spec, tiny_dir)
    negative = "blurry" if spec.parameters.negative_prompt else None
    tasks = [params(0, "a red fox in the snow", [11], negative_prompt=negative),
             params(1, "a lighthouse", [12, 13], negative_prompt=negative),
             params(2, "a much longer prompt about a small blue boat on a calm lake at dawn",
                    [11], negative_prompt=negative),
             params(3, "a red fox in the snow", [14], negative_prompt=negative)]
    return compare(r, pipe, [Job(p, None) for p in tasks])


def image_to_image_check(tiny_dir: str) -> dict:
    from PIL import Image

    from deployments.registry import FAMILIES

    spec = FAMILIES["flux"]
    r, pipe = runner(spec), load(spec, tiny_dir)
    colours = [(200, 30, 30), (20, 40, 220), (240, 240, 20)]
    jobs = [Job(params(i, "a cat", [5], task="image-to-image", strength=0.5,
                       num_inference_steps=4, image_keys=["in"]), None,
                [Image.new("RGB", (64, 64), c)]) for i, c in enumerate(colours)]
    result = compare(r, pipe, jobs)
    pngs = [run(r, pipe, [j])[j.task_id] for j in jobs]
    result["inputs_kept"] = len({p[0] for p in pngs}) == len(jobs)
    return result


def position_sensitive_functions() -> dict[str, Callable]:
    import torch
    import torch.nn.functional as F

    return {
        "silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "sigmoid": torch.sigmoid, "tanh": lambda x: x.tanh(), "mish": F.mish,
        "softplus": F.softplus, "exp": torch.exp, "sin": lambda x: x.sin(), "cos": torch.cos,
        "erf": torch.erf, "log1p": lambda x: torch.log1p(x.abs()),
        "softmax": lambda x: x.softmax(-1),
        "mean": lambda x: x.mean(-1, keepdim=True), "sum": lambda x: x.sum(-1),
        "layer_norm": lambda x: F.layer_norm(x, x.shape[-1:]),
        "rms_norm": lambda x: F.rms_norm(x, x.shape[-1:]),
        "pow": lambda x: x.abs() ** 0.7,
    }


def ops_check() -> dict:
    """Each function on a batch of 8 against each sample alone, at every position, for shapes
    whose rows end in a vector tail and one large enough to be split across threads."""
    import torch

    from deployments.invariance import invariant_execution

    torch.manual_seed(0)
    shapes = [(8, 7), (8, 13), (8, 24), (8, 40), (8, 3, 5), (8, 100), (8, 70000)]
    inputs = [torch.rand(*s) * 4 - 2 for s in shapes]
    # the same values permuted in memory: a sample alone then has other strides
    inputs.append(torch.rand(8, 24, 5).transpose(1, 2) * 4 - 2)
    found: dict[str, dict[str, list]] = {"plain": {}, "invariant": {}}
    for mode_name, mode in (("plain", None), ("invariant", invariant_execution)):
        for name, fn in position_sensitive_functions().items():
            for x in inputs:
                with mode("cpu") if mode else _nothing():
                    full = fn(x)
                    alone = [fn(x[i:i + 1].clone()) for i in range(x.shape[0])]
                if any(not torch.equal(a, full[i:i + 1]) for i, a in enumerate(alone)):
                    found[mode_name].setdefault(name, []).append(list(x.shape))
    return found


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--families", default="")
    args = parser.parse_args()
    result = {"capability": torch.backends.cpu.get_cpu_capability(),
              "requested": os.environ.get("ATEN_CPU_CAPABILITY"), "ops": ops_check(),
              "families": {}}
    for name in filter(None, args.families.split(",")):
        result["families"][name] = family_check(name, args.tiny_dir)
    result["families"]["flux:image-to-image"] = image_to_image_check(args.tiny_dir)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------ used by the tests

_ORDER = ["DEFAULT", "AVX2", "AVX512"]


def _clean_env(**more) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **more)
    return env


def supported_capabilities() -> list[str]:
    """The CPU kernel sets PyTorch can run here: `default` always, then each x86 level up to
    the one it picks by itself (forcing a level the CPU lacks would crash with SIGILL)."""
    import subprocess
    import sys

    native = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=_clean_env(), capture_output=True, text=True, check=True).stdout.strip()
    if native not in _ORDER:  # another architecture (NEON, SVE, ZVECTOR): its own level
        return ["default", native.lower()] if native != "DEFAULT" else ["default"]
    return [c.lower() for c in _ORDER[:_ORDER.index(native) + 1]]


def run_check(capability: str, tiny_dir, families: list[str], out) -> dict:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.batch_check", "--tiny-dir", str(tiny_dir),
         "--out", str(out), "--families", ",".join(families)],
        cwd=root, env=_clean_env(ATEN_CPU_CAPABILITY=capability), capture_output=True,
        text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"batch check under {capability} exited {proc.returncode}:\n"
                           f"{proc.stderr[-4000:]}")
    return json.loads(Path(out).read_text())
