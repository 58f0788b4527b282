"""How many submissions per second the ingress accepts, with poll traffic, at 1, 16 and 64.

    python -m loadtests.bench_ingress --output /tmp/tessera-bench/ingress [--seconds 10]

Each worker loops: submit a generation, then poll its task once (as clients do). Counts 202s per
second of wall time, 429s separately, and the CPU seconds the Ray processes used meanwhile.
Without TESSERA_URL the script starts a local Tessera on a fresh Ray first. The tasks queue up
behind the model; the figure is the ingress's accept rate, not generation throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import time

import httpx
import psutil

from loadtests.common import (
    import_tiny,
    percentiles,
    require_loopback,
    start_local_server,
    write_report,
)


def ray_cpu_seconds() -> float:
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if "ray" in (proc.info["name"] or "") or "ray::" in cmd or "raylet" in cmd:
                t = proc.cpu_times()
                total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


async def level(url, keys, models, concurrency, seconds) -> dict:
    codes, latencies = collections.Counter(), []
    stop_at = time.time() + seconds
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def worker(w):
            key = keys[w % len(keys)]
            headers = {"Authorization": f"Bearer {key}"}
            i = 0
            while time.time() < stop_at:
                t0 = time.perf_counter()
                r = await client.post("/v1/images/generations", headers=headers, json={
                    "model": models[key], "prompt": f"bench {w}-{i}", "size": "64x64"})
                latencies.append((time.perf_counter() - t0) * 1000)
                codes[r.status_code] += 1
                if r.status_code == 202:
                    await client.get(f"/v1/tasks/{r.json()['task_id']}", headers=headers)
                i += 1

        cpu0, t0 = ray_cpu_seconds(), time.time()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall, cpu = time.time() - t0, ray_cpu_seconds() - cpu0
    return {"concurrency": concurrency, "accepted_per_s": round(codes[202] / wall, 1),
            "status_counts": dict(codes), "submit_latency_ms": percentiles(latencies),
            "ray_cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "cpu_cores_busy": round(cpu / wall, 2)}


async def run(url, keys, seconds, levels) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        models = {k: await import_tiny(client, k) for k in keys}
    return [await level(url, keys, models, c, seconds) for c in levels]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="ingress accept rate")
    p.add_argument("--output", required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--levels", default="1,16,64")
    args = p.parse_args(argv)
    url, stop = os.environ.get("TESSERA_URL"), None
    if url:
        require_loopback(url)
        keys = os.environ["TESSERA_API_KEY"].split(",")
    else:
        # generous queue caps: this measures the ingress, not the 429 path
        url, keys, stop = start_local_server(
            families={"flux": {"num_replicas": 1, "max_queued": 100_000}},
            limits={"max_queued_per_tenant": 100_000})
    try:
        rows = asyncio.run(run(url, keys, args.seconds,
                               [int(c) for c in args.levels.split(",")]))
    finally:
        if stop:
            stop()
    lines = ["| concurrency | accepted/s | submit p50 ms | submit p99 ms | Ray CPU cores busy |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['concurrency']} | {r['accepted_per_s']} | {r['submit_latency_ms']['p50']} "
              f"| {r['submit_latency_ms']['p99']} | {r['cpu_cores_busy']} |" for r in rows]
    write_report(args.output, "ingress", rows, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
