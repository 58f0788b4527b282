"""Batching on against off: images per second at several concurrencies, in one run.

    python -m loadtests.bench_batching --output /tmp/tessera-bench/batching \
        [--concurrency 1 4 16] [--seconds 20] [--size 256x256] [--steps 4] [--poll 0.25]

One local Ray, two Tessera apps side by side that differ only in the FLUX family's
`max_batch_size` (1 = off; N = on, with `batch_wait_timeout_s`), each with one replica of the tiny
FLUX checkpoint. For each concurrency, `c` closed-loop clients submit a generation, poll its task
(every `--poll` seconds) until it completes, and submit the next; the two apps are measured one
after the other, alternating, so drift on the machine hits both. Reports images/s, task latency,
the mean images per pipeline call (from each task's `pipeline.denoise` span, which carries its
call's image and task counts) and the ratio on/off per concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

from loadtests.common import import_tiny, out_dir, percentiles, start_local_apps, write_report

SPAN_WAIT_S = 8  # spans reach the trace file in batches every few seconds


def images_per_call(traces: Path, task_ids: set[str]) -> tuple[float | None, int]:
    """Mean images per pipeline call of these tasks, from their pipeline.denoise spans: a call
    shared by k tasks appears in each of their traces with tessera.batch_tasks = k."""
    spans = [json.loads(line) for line in traces.read_text().splitlines()]
    generate = {s["span_id"]: s["attributes"]["tessera.task_id"] for s in spans
                if s["name"] == "tessera.generate"}
    calls, images = 0.0, 0
    for s in spans:
        if s["name"] == "pipeline.denoise" and generate.get(s["parent_id"]) in task_ids:
            calls += 1 / s["attributes"]["tessera.batch_tasks"]
            images += s["attributes"]["tessera.batch_size"] / s["attributes"]["tessera.batch_tasks"]
    return (round(images / calls, 2) if calls else None), round(calls)


async def closed_loop(url: str, key: str, model: str, concurrency: int, seconds: float,
                      size: str, steps: int, poll_s: float = 0.25) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    latencies, calls, images, task_ids = [], [], 0, set()
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
            task_ids.add(task_id)
            while True:
                task = (await c.get(f"/v1/tasks/{task_id}", headers=headers)).json()
                if task["status"] in ("completed", "failed"):
                    break
                await asyncio.sleep(poll_s)
            if task["status"] != "completed":
                raise RuntimeError(f"task {task_id} failed: {task['error']}")
            latencies.append((time.perf_counter() - t0) * 1000)
            images += len(task["result"]["data"])
            calls.append(task["result"]["timings_ms"]["inference"])

    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, c) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"concurrency": concurrency, "images": images, "seconds": round(elapsed, 2),
            "images_per_s": round(images / elapsed, 2), "latency_ms": percentiles(latencies),
            "pipeline_call_ms": percentiles(calls), "task_ids": task_ids}


async def main_async(args) -> dict:
    traces_dir = Path(tempfile.mkdtemp(prefix="tessera-bench-traces-"))
    apps = {}
    for name, size in (("off", 1), ("on", args.batch_size)):
        apps[name] = {
            "families": {"flux": {"num_replicas": 1, "max_batch_size": size,
                                  "batch_wait_timeout_s": args.batch_wait,
                                  "max_ongoing_requests": max(args.concurrency)}},
            "tracing": {"exporter": "file", "path": str(traces_dir / f"{name}.jsonl")}}
    base, keys, stop = start_local_apps(apps)
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
                row[name] = await closed_loop(f"{base}/{name}", keys[0], models[name],
                                              concurrency, args.seconds, args.size, args.steps,
                                              args.poll)
            await asyncio.sleep(SPAN_WAIT_S)
            for name in ("off", "on"):
                task_ids = row[name].pop("task_ids")
                row[name]["images_per_call"], row[name]["pipeline_calls"] = images_per_call(
                    traces_dir / f"{name}.jsonl", task_ids)
            row["ratio_on_off"] = round(row["on"]["images_per_s"] / row["off"]["images_per_s"],
                                        2)
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("concurrency", "ratio_on_off")}), flush=True)
        return {"poll_s": args.poll, "size": args.size, "steps": args.steps,
                "batch_size": args.batch_size,
                "batch_wait_timeout_s": args.batch_wait, "seconds": args.seconds, "rows": rows}
    finally:
        stop()


def markdown(report: dict) -> str:
    lines = [f"Tiny FLUX, {report['size']}, {report['steps']} steps; batching on = "
             f"max_batch_size {report['batch_size']}, wait {report['batch_wait_timeout_s']} s; "
             f"{report['seconds']} s per cell; clients poll every {report['poll_s']} s.", "",
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
    parser.add_argument("--output", default=out_dir("batching"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--poll", type=float, default=0.25,
                        help="seconds between polls of a task (polls cost the ingress CPU)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batch-wait", type=float, default=0.05)
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    write_report(args.output, "batching", report, markdown(report))


if __name__ == "__main__":
    main()
