"""Serving overhead: the same tiny model called in-process and through the HTTP API, one run.

    python -m loadtests.bench_overhead --output /tmp/tessera-bench/overhead [--repeats 20]

Direct: the tiny FLUX checkpoint loaded with diffusers' own `FluxPipeline.from_pretrained` and
called in this process, while the server is up. API: submit to /v1/images/generations, poll
/v1/tasks/{id} every 20 ms until completed (the image is then in the store, with a URL); and the
same with `Prefer: wait`, one request answered when the task has ended, whose overhead is also
reported per request (its answer time minus its own pipeline call, then p50/p95). Also
reported: the server-side task time (created_at to completed_at, free of polling granularity)
and the replica's own pipeline time, so the overhead splits into pipeline slowdown inside Serve
and serving work around it; and, for a local server on Linux, the CPU time each Ray process
(and HAProxy, and this client) spent per waited request. Without TESSERA_URL the script starts
a local Tessera on a fresh Ray first. Reports p50/p99 of both, the overhead in ms and the ratio
API/direct per image size.

    --haproxy: the local Ray runs Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1 and
    RAY_SERVE_THROUGHPUT_OPTIMIZED=1; ray[serve] brings HAProxy on Linux): HAProxy on the HTTP port
    forwards to the ingress replica directly, with no Python proxy hop.
"""

from __future__ import annotations

import argparse
import os
import time

import httpx

from loadtests.common import (
    import_tiny,
    percentiles,
    require_loopback,
    start_local_server,
    write_report,
)


def direct_times(sizes, repeats, steps, data_dir) -> dict:
    import torch
    from diffusers import FluxPipeline

    from deployments.loading import ensure_tiny_checkpoint
    from deployments.registry import FAMILIES

    pipe = FluxPipeline.from_pretrained(str(ensure_tiny_checkpoint(data_dir, FAMILIES["flux"])))
    pipe.set_progress_bar_config(disable=True)
    out = {}
    for w, h in sizes:
        times = []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            with torch.inference_mode():
                pipe(prompt="a red fox", width=w, height=h, num_inference_steps=steps,
                     generator=torch.Generator().manual_seed(i), max_sequence_length=256)
            if i:  # the first call warms caches
                times.append((time.perf_counter() - t0) * 1000)
        out[f"{w}x{h}"] = times
    return out


def process_cpu() -> dict[str, float]:
    """CPU seconds so far of this machine's Ray processes (by their title: "ray::TaskManager",
    "ray::ServeReplica:bench:ingress", raylet, gcs_server), HAProxy and this client, summed per
    name; empty where there is no /proc. A local server only: a remote one's processes are not
    here."""
    if not os.path.isdir("/proc"):
        return {}
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").replace("\0", " ").split()
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if not argv:
            continue
        name = argv[0] if argv[0].startswith("ray::") else os.path.basename(argv[0])
        if int(pid) == os.getpid():
            name = "benchmark client"
        elif not (name.startswith("ray::") or name in ("raylet", "gcs_server", "haproxy")):
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def api_times(url, key, sizes, repeats, steps, wait=False) -> tuple[dict, dict, dict]:
    headers = {"Authorization": f"Bearer {key}"}
    out, server, inference = {}, {}, {}
    with httpx.Client(base_url=url, timeout=120) as client:
        import asyncio

        async def model():
            async with httpx.AsyncClient(base_url=url, timeout=120) as c:
                return await import_tiny(c, key)

        model_id = asyncio.run(model())
        for w, h in sizes:
            times, server_ms, inference_ms = [], [], []
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                body = {"model": model_id, "prompt": "a red fox", "size": f"{w}x{h}",
                        "num_inference_steps": steps, "seed": i}
                if wait:  # one request: the answer comes when the task has ended
                    task = client.post("/v1/images/generations", json=body,
                                       headers={**headers, "Prefer": "wait=60"}).json()
                else:
                    task_id = client.post("/v1/images/generations", headers=headers,
                                          json=body).json()["task_id"]
                    while True:
                        task = client.get(f"/v1/tasks/{task_id}", headers=headers).json()
                        if task["status"] in ("completed", "failed"):
                            break
                        time.sleep(0.02)
                assert task["status"] == "completed", task
                if i:
                    times.append((time.perf_counter() - t0) * 1000)
                    server_ms.append((task["completed_at"] - task["created_at"]) * 1000)
                    inference_ms.append(task["result"]["timings_ms"]["inference"])
            out[f"{w}x{h}"] = times
            server[f"{w}x{h}"], inference[f"{w}x{h}"] = server_ms, inference_ms
    return out, server, inference


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="serving overhead of the HTTP API")
    p.add_argument("--output", required=True)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--sizes", default="64x64,256x256,512x512")
    p.add_argument("--haproxy", action="store_true",
                   help="Serve's HAProxy ingress on the local Ray (see the module's docstring)")
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    url, stop = os.environ.get("TESSERA_URL"), None
    if url:
        require_loopback(url)
        key = os.environ["TESSERA_API_KEY"].split(",")[0]
    else:
        if args.haproxy:  # read by every Ray process at start: set before Ray starts
            from cluster.local import HAPROXY_ENV

            os.environ.update(HAPROXY_ENV)
        url, keys, stop = start_local_server()
        key = keys[0]
    try:
        api, server, inference = api_times(url, key, sizes, args.repeats, args.steps)
        before = process_cpu() if stop else {}
        waited, _, waited_inference = api_times(url, key, sizes, args.repeats, args.steps,
                                                wait=True)
        # where the CPU went while waited requests ran, per request: the serving machinery
        # that the overhead is made of, beside the replica's pipeline
        served = len(sizes) * (args.repeats + 1)
        cpu = {name: round((t - before[name]) * 1000 / served, 2)
               for name, t in process_cpu().items() if name in before and t > before[name]}
        # per request: its answer time minus its own pipeline call, so that a pipeline slowed
        # by a busy machine does not move the overhead (as a difference of two p50s would)
        paired = {size: [a - i for a, i in zip(waited[size], waited_inference[size],
                                                 strict=True)] for size in waited}
        # measured while the server is still up (idle), so both sides share its background load
        direct = direct_times(sizes, args.repeats, args.steps,
                              os.environ.get("TESSERA_DATA_DIR", "./.tessera"))
    finally:
        if stop:
            stop()
    rows = []
    for size in api:
        d, a = percentiles(direct[size]), percentiles(api[size])
        rows.append({"size": size, "direct_ms": d, "api_ms": a,
                     "api_wait_ms": percentiles(waited[size]),
                     # the pipeline during the waiting runs: polling itself loads the CPU
                     "replica_pipeline_wait_ms": percentiles(waited_inference[size]),
                     "wait_overhead_ms": percentiles(paired[size]),
                     "server_task_ms": percentiles(server[size]),
                     "replica_pipeline_ms": percentiles(inference[size]),
                     "overhead_ms": {q: round(a[q] - d[q], 2) for q in ("p50", "p99")},
                     "ratio": {q: round(a[q] / d[q], 2) for q in ("p50", "p99")}})
    report = {"repeats": args.repeats, "steps": args.steps, "haproxy": args.haproxy,
              "rows": rows, "waiting_cpu_ms_per_request": dict(
                  sorted(cpu.items(), key=lambda kv: -kv[1]))}
    lines = ["| size | direct p50 | API p50 | overhead p50 | ratio p50 | direct p99 | API p99 "
             "| overhead p99 | ratio p99 | server-side task p50 | replica pipeline p50 | "
             "API p50, Prefer: wait | its overhead over its pipeline p50 | "
             "per request, answer minus its pipeline: p50 / p95 |",
             "|" + " --- |" * 14]
    for r in rows:
        lines.append(f"| {r['size']} | {r['direct_ms']['p50']} | {r['api_ms']['p50']} | "
                     f"{r['overhead_ms']['p50']} | {r['ratio']['p50']} | "
                     f"{r['direct_ms']['p99']} | {r['api_ms']['p99']} | "
                     f"{r['overhead_ms']['p99']} | {r['ratio']['p99']} | "
                     f"{r['server_task_ms']['p50']} | {r['replica_pipeline_ms']['p50']} | "
                     f"{r['api_wait_ms']['p50']} | "
                     f"{r['api_wait_ms']['p50'] - r['replica_pipeline_wait_ms']['p50']:.1f} | "
                     f"{r['wait_overhead_ms']['p50']} / {r['wait_overhead_ms']['p95']} |")
    if cpu:
        lines += ["", "CPU per waited request (ms), by process: " + ", ".join(
            f"{name} {ms}" for name, ms in report["waiting_cpu_ms_per_request"].items())]
    write_report(args.output, "overhead", report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
