"""Batching on against off: images per second at several concurrencies, in one run.

    python -m loadtests.bench_batching --output loadtests/out/batching \
        [--concurrency 1 4 16] [--seconds 20] [--size 128x128] [--steps 4]

One local Ray, two Tessera apps side by side that differ only in the FLUX family's
`max_batch_size` (1 = off; N = on, with `batch_wait_timeout_s`), each with one replica of the tiny
FLUX checkpoint. For each concurrency, `c` closed-loop clients submit a generation, poll its task
every 20 ms until it completes, and submit the next; the two apps are measured one after the
other, alternating, so drift on the machine hits both. Reports images/s, task latency and the
mean images per pipeline call (the `tessera_batch_size` histogram scraped from Ray's metrics
endpoint before and after each cell), and the ratio on/off per concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import httpx

from loadtests.common import import_tiny, percentiles

METRICS_WAIT_S = 12  # Ray exports application metrics every few seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_histogram(metrics_port: int) -> tuple[float, float]:
    """(sum, count) of images per pipeline call so far, all apps together."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    total = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in total:
            if line.startswith(f"ray_tessera_batch_size_{part}{{"):
                total[part] += float(line.rsplit(" ", 1)[1])
    return total["sum"], total["count"]


def start(batch_size: int, wait_s: float, max_ongoing: int, metrics_port: int):
    os.environ.setdefault("TESSERA_API_KEYS", "bench-key-a=bench-a")
    import ray
    from ray import serve

    from deployments.registry import FAMILIES
    from serve_app.builder import build_app

    port = free_port()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
             _metrics_export_port=metrics_port)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    data_dir = tempfile.mkdtemp(prefix="tessera-bench-batching-")
    for name, size in (("off", 1), ("on", batch_size)):
        flux = {"num_replicas": 1, "max_batch_size": size, "batch_wait_timeout_s": wait_s,
                "max_ongoing_requests": max_ongoing}
        serve.run(build_app({
            "data_dir": data_dir, "instance": f"bench-{name}",
            "families": {f: ({"enabled": True} | flux) if f == "flux" else {"enabled": False}
                         for f in FAMILIES}}), name=name, route_prefix=f"/{name}")

    def stop():
        serve.shutdown()
        ray.shutdown()

    return f"http://127.0.0.1:{port}", ["bench-key-a"], stop


async def closed_loop(url: str, key: str, model: str, concurrency: int, seconds: float,
                      size: str, steps: int) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    latencies, calls, images = [], [], 0
    stop_at = time.monotonic() + seconds

    async def client(worker: int, c: httpx.AsyncClient):
        nonlocal images
        seed = worker * 100_000
        while time.monotonic() < stop_at:
            seed += 1
            t0 = time.perf_counter()
            r = await c.post("/v1/images/generations", headers=headers, json={
                "model": model, "prompt": f"a red fox, take {seed}", "size": size,
                "num_inference_steps": steps, "seed": seed})
            r.raise_for_status()
            task_id = r.json()["task_id"]
            while True:
                task = (await c.get(f"/v1/tasks/{task_id}", headers=headers)).json()
                if task["status"] in ("completed", "failed"):
                    break
                await asyncio.sleep(0.02)
            if task["status"] != "completed":
                raise RuntimeError(f"task {task_id} failed: {task['error']}")
            latencies.append((time.perf_counter() - t0) * 1000)
            images += len(task["result"]["images"])
            calls.append(task["result"]["timings_ms"]["inference"])

    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, c) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"concurrency": concurrency, "images": images, "seconds": round(elapsed, 2),
            "images_per_s": round(images / elapsed, 2), "latency_ms": percentiles(latencies),
            "pipeline_call_ms": percentiles(calls)}


async def main_async(args) -> dict:
    metrics_port = free_port()
    base, keys, stop = start(args.batch_size, args.batch_wait, max(args.concurrency),
                             metrics_port)
    try:
        models = {}
        for name in ("off", "on"):
            async with httpx.AsyncClient(base_url=f"{base}/{name}", timeout=300) as c:
                models[name] = await import_tiny(c, keys[0])
            # warm-up: the replica loads the model on its first task
            await closed_loop(f"{base}/{name}", keys[0], models[name], 2, 3, args.size,
                              args.steps)
        rows = []
        for concurrency in args.concurrency:
            row = {"concurrency": concurrency}
            for name in ("off", "on"):
                await asyncio.sleep(METRICS_WAIT_S)
                before = await asyncio.to_thread(batch_histogram, metrics_port)
                row[name] = await closed_loop(f"{base}/{name}", keys[0], models[name],
                                              concurrency, args.seconds, args.size, args.steps)
                await asyncio.sleep(METRICS_WAIT_S)
                after = await asyncio.to_thread(batch_histogram, metrics_port)
                calls = after[1] - before[1]
                row[name]["pipeline_calls"] = calls
                row[name]["images_per_call"] = round((after[0] - before[0]) / calls, 2) \
                    if calls else None
            row["ratio_on_off"] = round(row["on"]["images_per_s"] / row["off"]["images_per_s"],
                                        2)
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("concurrency", "ratio_on_off")}), flush=True)
        return {"size": args.size, "steps": args.steps, "batch_size": args.batch_size,
                "batch_wait_timeout_s": args.batch_wait, "seconds": args.seconds, "rows": rows}
    finally:
        stop()


def markdown(report: dict) -> str:
    lines = [f"Tiny FLUX, {report['size']}, {report['steps']} steps; batching on = "
             f"max_batch_size {report['batch_size']}, wait {report['batch_wait_timeout_s']} s; "
             f"{report['seconds']} s per cell.", "",
             "| concurrency | off: images/s | on: images/s | on/off | images per call (on) | "
             "off: p50 latency | on: p50 latency |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["rows"]:
        lines.append(f"| {row['concurrency']} | {row['off']['images_per_s']} | "
                     f"{row['on']['images_per_s']} | {row['ratio_on_off']} | "
                     f"{row['on']['images_per_call']} | "
                     f"{row['off']['latency_ms']['p50']} ms | "
                     f"{row['on']['latency_ms']['p50']} ms |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="loadtests/out/batching")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--size", default="128x128")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batch-wait", type=float, default=0.05)
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
