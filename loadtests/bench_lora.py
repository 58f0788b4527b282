"""LoRA adapters in the pipeline call: a warm adapter against the plain base, a switch between
two warm adapters, and a cold adapter from disk and from a URL, in one run.

    python -m loadtests.bench_lora --output /tmp/tessera-bench/lora \
        [--repeats 5] [--size 256] [--steps 4] [--rank 16] [--layers 2 4] [--heads 8] \
        [--device cpu|cuda]

A FLUX.1 pipeline with random weights whose transformer has FLUX's own head size (128) and
`--heads` heads (24 is FLUX.1's 3072-wide model) over `--layers` double and single blocks, with
the tiny text encoders and VAE (the denoiser is what adapters touch). Adapters are made with
peft (`deployments.adapters.tiny`, rank `--rank`, on the attention projections) and run through
the family server's own code: `PipelineCalls.run` and the replica's `AdapterCache`.

- base: the plain pipeline, before any adapter was loaded;
- base, adapters loaded: the same call on a replica that holds adapters (disabled);
- warm: one adapter, already on the device;
- switch: two warm adapters, alternating call by call;
- cold (disk): the adapter's bytes read from a file, checked, converted and loaded, then the call;
- cold (URL): the same, fetched first through the ingress's guarded fetch from a server on
  127.0.0.1.

Each variant runs `--repeats` times, interleaved round by round; p50s and their ratios against
the plain base (and warm) are reported. The goal for warm against base is at most 5% slower.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from loadtests.common import out_dir, percentiles, write_report


def build_pipeline(heads: int, layers: tuple[int, int], device: str):
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel

    from deployments import tiny

    components = tiny.flux_components()
    torch.manual_seed(0)
    components["transformer"] = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=layers[0], num_single_layers=layers[1],
        attention_head_dim=128, num_attention_heads=heads, joint_attention_dim=32,
        pooled_projection_dim=32, axes_dims_rope=[16, 56, 56])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = FluxPipeline(**components).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def serve_file(data: bytes) -> tuple[str, ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/adapter.safetensors", server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=out_dir("lora"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--layers", type=int, nargs=2, default=[2, 4])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import warnings

    from diffusers.utils import logging as diffusers_logging

    from deployments.adapters.cache import AdapterCache
    from deployments.adapters.sources import WEIGHTS
    from deployments.adapters.tiny import build_tiny_lora
    from deployments.calls import Job, PipelineCalls
    from deployments.loading import quiet_libraries
    from deployments.registry import FAMILIES
    from serve_app.core import netguard
    from serve_app.core.types import AdapterRef, GenerateParams, GenerateRequest

    quiet_libraries()
    diffusers_logging.set_verbosity_error()  # "no LoRA keys for the text encoder", per load
    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
    pipe = build_pipeline(args.heads, tuple(args.layers), args.device)
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-lora-"))
    files = []
    for seed in (0, 1):
        out = build_tiny_lora(pipe, "flux", work / f"lora{seed}", seed=seed, rank=args.rank)
        files.append(out / WEIGHTS)
    datas = [f.read_bytes() for f in files]
    refs = [AdapterRef(path=str(f), scale=1.0, sha256=hashlib.sha256(d).hexdigest(),
                       key=f"bench/{i}", size=len(d))
            for i, (f, d) in enumerate(zip(files, datas, strict=True))]
    url, server = serve_file(datas[0])

    def calls_with(cache: AdapterCache) -> PipelineCalls:
        return PipelineCalls(FAMILIES["flux"], 1, args.device, batch_invariant=False,
                             adapters=cache)

    def job(loras) -> Job:
        params = GenerateParams(prompt="a red fox", width=args.size, height=args.size,
                                num_inference_steps=args.steps, guidance_scale=3.5, seeds=[7],
                                loras=list(loras))
        return Job(GenerateRequest(task_id="bench", tenant="bench", model="bench",
                                   created_at=0.0, params=params))

    def timed(fn) -> float:
        if args.device == "cuda":
            import torch

            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if args.device == "cuda":
            import torch

            torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1000

    plain = calls_with(AdapterCache(0, 0))
    plain.run(pipe, [job([])])  # warm-up: first-call allocations and kernel choices
    times: dict[str, list[float]] = {k: [] for k in (
        "base", "base, adapters loaded", "warm", "switch", "cold (disk)", "cold (URL)")}
    adapter_ms: dict[str, list[float]] = {"cold (disk)": [], "cold (URL)": []}
    for _ in range(args.repeats):
        times["base"].append(timed(lambda: plain.run(pipe, [job([])])))
        for source in ("cold (disk)", "cold (URL)"):
            cache = AdapterCache(1 << 34, 1 << 34)
            calls = calls_with(cache)

            def cold(source=source, cache=cache, calls=calls):
                t0 = time.perf_counter()
                data = (files[0].read_bytes() if source == "cold (disk)" else asyncio.run(
                    netguard.fetch(url, param="loras[0].path", max_bytes=1 << 31,
                                   timeout_s=60, allow_private=True, what="the adapter")))
                cache.prepare(pipe, refs[0], data, "loras[0].path", 1024)
                cache.activate(pipe, [refs[0]])
                adapter_ms[source].append((time.perf_counter() - t0) * 1000)
                calls.run(pipe, [job([refs[0]])])

            times[source].append(timed(cold))
            pipe.unload_lora_weights()  # cold again for the next one
        cache = AdapterCache(1 << 34, 1 << 34)
        calls = calls_with(cache)
        for ref, data in zip(refs, datas, strict=True):
            cache.prepare(pipe, ref, data, "loras[0].path", 1024)
        calls.run(pipe, [job([refs[0]])])
        calls.run(pipe, [job([refs[1]])])  # both warm now
        for name, loras in (("warm", [refs[0]]), ("warm", [refs[0]]), ("switch", [refs[1]]),
                            ("switch", [refs[0]]), ("base, adapters loaded", [])):
            times[name].append(timed(functools.partial(calls.run, pipe, [job(loras)])))
        assert cache.loads == 2, cache.loads  # warm and switch loaded nothing again
        pipe.unload_lora_weights()
    server.shutdown()

    p50 = {k: percentiles(v)["p50"] for k, v in times.items()}
    base, warm = p50["base"], p50["warm"]
    report = {
        "device": args.device, "size": args.size, "steps": args.steps, "rank": args.rank,
        "heads": args.heads, "layers": args.layers, "repeats": args.repeats,
        "adapter_bytes": len(datas[0]), "p50_ms": p50,
        "adapter_load_p50_ms": {k: percentiles(v)["p50"] for k, v in adapter_ms.items()},
        "ratios": {
            "warm / base": round(warm / base, 3),
            "base with adapters loaded / base": round(p50["base, adapters loaded"] / base, 3),
            "switch / warm": round(p50["switch"] / warm, 3),
            "cold (disk) / warm": round(p50["cold (disk)"] / warm, 3),
            "cold (URL) / warm": round(p50["cold (URL)"] / warm, 3)},
    }
    rows = "\n".join(f"| {k} | {v:.1f} | {v / base:.3f} |" for k, v in p50.items())
    markdown = (
        f"# LoRA in the pipeline call ({args.device}, FLUX-shaped {args.heads}x128 wide, "
        f"{args.layers[0]}+{args.layers[1]} blocks, {args.size}², {args.steps} steps, rank "
        f"{args.rank}, adapter {len(datas[0]) / 1e6:.1f} MB, p50 of {args.repeats})\n\n"
        "| variant | p50 ms | / base |\n|---|---|---|\n" + rows + "\n\n"
        f"Adapter read, check and load alone (p50): from disk "
        f"{report['adapter_load_p50_ms']['cold (disk)']:.1f} ms, by URL "
        f"{report['adapter_load_p50_ms']['cold (URL)']:.1f} ms.\n")
    write_report(args.output, "lora", report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
