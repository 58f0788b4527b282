"""The floor of a waited request on this machine: its three round trips with no work in them.

    python -m loadtests.bench_floor --output /tmp/tessera-bench/floor [--repeats 200] [--gap-ms 50]

A `Prefer: wait` request makes three round trips around its pipeline call: the client's HTTP
request to the ingress, the ingress's submit-and-wait call to the task actor, and the task
actor's stream from the family replica. This benchmark starts a local Tessera on a fresh Ray
with Serve's HAProxy ingress (as `bench_overhead --haproxy` does) and times each of them empty:

- HTTP: `GET /healthz` through HAProxy and the ingress replica;
- actor call: an async actor sends a `Task` to another async actor and gets it back;
- Serve stream: an async actor reads two events from a Serve deployment, by value over gRPC,
  with the handle options the task actor's dispatch uses.

Each is timed back to back and with a pause between calls (`--gap-ms`), since in a real request
a pipeline call keeps the callers idle in between. Their sum is the least a waited request can
spend over its pipeline before any encoding, storing, committing or Tessera code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import httpx

from loadtests.common import percentiles, start_local_server, write_report


def sample_task():
    from serve_app.core.tasks import Task
    from serve_app.core.types import GenerateParams

    now = time.time()
    params = GenerateParams(prompt="a red fox", width=64, height=64, num_inference_steps=4,
                            guidance_scale=3.5, seeds=[1])
    return Task(id="task_" + "0" * 20, tenant="bench", model="tm_bench", family="flux",
                source="tessera/tiny-flux", params=params, created_at=now,
                deadline_at=now + 600, base_url="http://127.0.0.1:8000",
                request={"model": "tm_bench", "prompt": "a red fox", "size": "64x64", "n": 1})


def ray_round_trips(repeats: int, gaps: list[float]) -> dict:
    import ray
    from ray import serve

    @serve.deployment(max_ongoing_requests=4)
    class Streamer:
        async def generate(self, value):
            yield "started"
            yield value

    @ray.remote(num_cpus=0)
    class Echo:
        async def echo(self, task):
            return task

    @ray.remote(num_cpus=0)
    class Caller:
        def __init__(self, echo, handle):
            self.echo = echo
            # what dispatch does: by value over the replica's gRPC server, streamed
            self.stream = handle.options(stream=True, _by_reference=False)

        async def time(self, kind: str, n: int, gap: float) -> list[float]:
            task = sample_task()
            times = []
            for i in range(n):
                t0 = time.perf_counter()
                if kind == "actor call":
                    await self.echo.echo.remote(task)
                else:
                    async for _ in self.stream.generate.remote(i):
                        pass
                times.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(gap)
            return times

    handle = serve.run(Streamer.bind(), name="floor", route_prefix=None)
    caller = Caller.remote(Echo.remote(), handle)
    out = {}
    for kind in ("actor call", "Serve stream"):
        ray.get(caller.time.remote(kind, 20, 0))  # first calls set up connections
        out[kind] = {gap: ray.get(caller.time.remote(kind, repeats, gap)) for gap in gaps}
    serve.delete("floor")
    return out


def http_round_trips(url: str, repeats: int, gaps: list[float]) -> dict:
    out = {}
    with httpx.Client(base_url=url) as client:
        for _ in range(20):
            client.get("/healthz").raise_for_status()
        for gap in gaps:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                client.get("/healthz").raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
                time.sleep(gap)
            out[gap] = times
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="the floor of a waited request's round trips")
    p.add_argument("--output", required=True)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--gap-ms", type=float, default=50.0)
    args = p.parse_args(argv)
    gaps = [0.0, args.gap_ms / 1000]
    from cluster.local import HAPROXY_ENV

    os.environ.update(HAPROXY_ENV)  # read by every Ray process at start
    url, _, stop = start_local_server()
    try:
        trips = {"HTTP": http_round_trips(url, args.repeats, gaps),
                 **ray_round_trips(args.repeats, gaps)}
    finally:
        stop()
    rows = [{"round_trip": kind, "back_to_back_ms": percentiles(by_gap[gaps[0]]),
             "apart_ms": percentiles(by_gap[gaps[1]])} for kind, by_gap in trips.items()]
    total = {key: round(sum(r[key]["p50"] for r in rows), 2)
             for key in ("back_to_back_ms", "apart_ms")}
    report = {"repeats": args.repeats, "gap_ms": args.gap_ms, "rows": rows, "sum_p50": total}
    lines = [f"| round trip | back to back p50 | back to back p95 | {args.gap_ms:g} ms apart p50 "
             f"| {args.gap_ms:g} ms apart p95 |", "|" + " --- |" * 5]
    for r in rows:
        b, a = r["back_to_back_ms"], r["apart_ms"]
        lines.append(f"| {r['round_trip']} | {b['p50']} | {b['p95']} | {a['p50']} | {a['p95']} |")
    lines.append(f"| sum of p50s | {total['back_to_back_ms']} | | {total['apart_ms']} | |")
    write_report(args.output, "floor", report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
