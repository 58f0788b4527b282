"""Headless load runner: submit, poll, download; report where the time went.

    python -m loadtests.run --scenario burst --tasks 500 --output /tmp/tessera-bench/burst \
        --api-key KEY_A --api-key KEY_B

Targets only loopback (TESSERA_URL, default http://127.0.0.1:8000), bounds its requests by
count and time, stops by itself, and writes report.json and report.md. Exits 1 if any accepted
task was lost (never reached completed or failed).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import time

import httpx

from loadtests.common import api_keys, import_tiny, percentiles, require_loopback, write_report

FINAL = ("completed", "failed")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=("burst", "steady", "mixed"), required=True)
    p.add_argument("--output", required=True, help="directory for report.json and report.md")
    p.add_argument("--url", default=os.environ.get("TESSERA_URL", "http://127.0.0.1:8000"))
    p.add_argument("--api-key", action="append", help="one per tenant; or TESSERA_API_KEY=a,b")
    p.add_argument("--tasks", type=int, default=500, help="most tasks to submit")
    p.add_argument("--rate", type=float, default=10.0, help="tasks/s for steady and mixed")
    p.add_argument("--duration", type=float, default=60.0, help="most seconds spent submitting")
    p.add_argument("--timeout", type=float, default=900.0, help="most seconds for the whole run")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight at once")
    p.add_argument("--sizes", default="64x64,96x64,128x128")
    p.add_argument("--families", default="flux", help="mixed: tiny families to spread over")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-download", action="store_true")
    return p.parse_args(argv)


class Run:
    def __init__(self, args: argparse.Namespace, keys: list[str]):
        self.args, self.keys = args, keys
        self.rng = random.Random(args.seed)
        self.sizes = args.sizes.split(",")
        self.families = args.families.split(",") if args.scenario == "mixed" else ["flux"]
        self.models: dict[tuple[str, str], str] = {}
        self.submits: list[dict] = []
        self.tasks: dict[str, dict] = {}
        self.owner: dict[str, str] = {}
        self.downloads = {"ok": 0, "failed": 0, "ms": []}
        self.started = time.time()

    def headers(self, key: str) -> dict:
        return {"Authorization": f"Bearer {key}"}

    def time_left(self) -> float:
        return self.args.timeout - (time.time() - self.started)

    def request_body(self, i: int, key: str) -> dict:
        family = self.families[i % len(self.families)]
        mixed = self.args.scenario == "mixed"
        return {"model": self.models[(key, family)], "prompt": f"load test image {i}",
                "size": self.rng.choice(self.sizes) if mixed else self.sizes[i % len(self.sizes)],
                "n": self.rng.choice((1, 1, 2)) if mixed else 1,
                "num_inference_steps": self.args.steps, "seed": i}

    async def submit(self, client: httpx.AsyncClient, i: int) -> None:
        key = self.keys[i % len(self.keys)]
        t0 = time.perf_counter()
        try:
            r = await client.post("/v1/images/generations", headers=self.headers(key),
                                  json=self.request_body(i, key))
            code = r.json().get("error", {}).get("code") if r.status_code != 202 else None
        except httpx.HTTPError as exc:
            r, code = None, type(exc).__name__
        record = {"ms": (time.perf_counter() - t0) * 1000,
                  "status": r.status_code if r is not None else None, "error": code}
        self.submits.append(record)
        if r is not None and r.status_code == 202:
            task_id = r.json()["task_id"]
            self.tasks[task_id] = {"status": "queued"}
            self.owner[task_id] = key

    async def submit_all(self, client: httpx.AsyncClient) -> None:
        limit = asyncio.Semaphore(self.args.concurrency)
        deadline = time.time() + self.args.duration

        async def one(i):
            async with limit:
                await self.submit(client, i)

        if self.args.scenario == "burst":
            await asyncio.gather(*(one(i) for i in range(self.args.tasks)))
            return
        pending, interval, i = [], 1.0 / self.args.rate, 0
        while i < self.args.tasks and time.time() < deadline:
            pending.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(interval)
        await asyncio.gather(*pending)

    async def poll_until_done(self, client: httpx.AsyncClient) -> None:
        while self.time_left() > 0:
            open_ids = [t for t, v in self.tasks.items() if v["status"] not in FINAL]
            if not open_ids:
                return
            for key in self.keys:
                r = await client.get("/v1/tasks", headers=self.headers(key),
                                     params={"limit": 500})
                for task in r.json()["data"]:
                    if task["id"] in self.tasks:
                        self.tasks[task["id"]] = task
            # tasks beyond the listing window are polled one by one
            missing = [t for t in open_ids if self.tasks[t].get("id") is None][:50]
            for task_id in missing:
                r = await client.get(f"/v1/tasks/{task_id}",
                                     headers=self.headers(self.owner[task_id]))
                if r.status_code == 200:
                    self.tasks[task_id] = r.json()
            await asyncio.sleep(0.5)

    async def download_all(self, client: httpx.AsyncClient) -> None:
        limit = asyncio.Semaphore(self.args.concurrency)

        async def one(url):
            async with limit:
                t0 = time.perf_counter()
                try:
                    r = await client.get(url)
                    ok = r.status_code == 200 and len(r.content) > 0
                except httpx.HTTPError:
                    ok = False
                self.downloads["ok" if ok else "failed"] += 1
                self.downloads["ms"].append((time.perf_counter() - t0) * 1000)

        urls = [d["url"] for t in self.tasks.values() if t.get("status") == "completed"
                for d in t["result"]["data"]]
        await asyncio.gather(*(one(u) for u in urls))

    def report(self) -> dict:
        accepted = len(self.tasks)
        final = [t for t in self.tasks.values() if t.get("status") in FINAL]
        done = [t for t in final if t["status"] == "completed"]
        failed = collections.Counter(t["error"]["code"] for t in final if t["status"] == "failed")
        rejected = collections.Counter(s["error"] or str(s["status"]) for s in self.submits
                                       if s["status"] != 202)
        ms = lambda a, b: [(t[b] - t[a]) * 1000 for t in done if t.get(a) and t.get(b)]  # noqa
        queue_wait, e2e = ms("created_at", "started_at"), ms("created_at", "completed_at")
        stages = collections.defaultdict(list)
        for t in done:
            for stage, value in t["result"]["timings_ms"].items():
                stages[stage].append(value)
        mean = lambda v: round(sum(v) / len(v), 2) if v else None  # noqa: E731
        # queue wait runs from submit to the pipeline starting, so it already holds the model
        # load (and input fetch) that happens on the replica before the start notice
        breakdown = {"queue wait (incl. model load)": mean(queue_wait),
                     **{("model load" if k == "load" else k): mean(v)
                        for k, v in stages.items()}}
        known = mean(queue_wait) + sum(mean(v) for k, v in stages.items() if k != "load") \
            if e2e else 0
        breakdown["other (result hand-back)"] = round(mean(e2e) - known, 2) if e2e else None
        images = sum(t["result"]["usage"]["images"] for t in done)
        span = (max(t["completed_at"] for t in done) - min(t["created_at"] for t in done)
                if done else 0)
        return {
            "scenario": self.args.scenario, "url": self.args.url, "tenants": len(self.keys),
            "families": self.families, "sizes": self.sizes, "steps": self.args.steps,
            "submitted": len(self.submits), "accepted": accepted,
            "rejected_by_code": dict(rejected), "completed": len(done),
            "failed_by_code": dict(failed), "lost": accepted - len(final),
            "submit_latency_ms": percentiles([s["ms"] for s in self.submits]),
            "queue_wait_ms": percentiles(queue_wait),
            "end_to_end_ms": percentiles(e2e),
            "images": images, "images_per_second": round(images / span, 3) if span else None,
            "mean_ms_by_stage": breakdown,
            "downloads": {"ok": self.downloads["ok"], "failed": self.downloads["failed"],
                          "latency_ms": percentiles(self.downloads["ms"])},
            "wall_s": round(time.time() - self.started, 2),
        }


async def run(args: argparse.Namespace) -> dict:
    require_loopback(args.url)
    keys = api_keys(args.api_key)
    r = Run(args, keys)
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=args.url, timeout=60, limits=limits) as client:
        for key in keys:
            for family in r.families:
                r.models[(key, family)] = await import_tiny(client, key, family)
        await asyncio.wait_for(r.submit_all(client), timeout=max(r.time_left(), 1))
        await r.poll_until_done(client)
        if not args.no_download:
            await r.download_all(client)
    return r.report()


def markdown(report: dict) -> str:
    def row(name, p):
        return f"| {name} | {p['p50']} | {p['p95']} | {p['p99']} | {p['mean']} | {p['n']} |"

    lines = [
        f"# Tessera load test: {report['scenario']}", "",
        f"- target {report['url']}, {report['tenants']} tenants, families "
        f"{', '.join(report['families'])}, sizes {', '.join(report['sizes'])}, "
        f"{report['steps']} steps",
        f"- submitted {report['submitted']}, accepted {report['accepted']}, completed "
        f"{report['completed']}, failed {report['failed_by_code'] or 0}, "
        f"rejected {report['rejected_by_code'] or 0}, **lost {report['lost']}**",
        f"- {report['images']} images, {report['images_per_second']} images/s, "
        f"wall {report['wall_s']} s; downloads ok {report['downloads']['ok']}, failed "
        f"{report['downloads']['failed']}", "",
        "| latency (ms) | p50 | p95 | p99 | mean | n |", "| --- | --- | --- | --- | --- | --- |",
        row("submit (202)", report["submit_latency_ms"]),
        row("queue wait", report["queue_wait_ms"]),
        row("end to end", report["end_to_end_ms"]),
        row("download", report["downloads"]["latency_ms"]), "",
        "Where a task's time goes (mean ms):", "", "| stage | ms |", "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in report["mean_ms_by_stage"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    write_report(args.output, "report", report, markdown(report))
    return 1 if report["lost"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
