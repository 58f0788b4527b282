"""What the durable task store costs the ingress: accepted submissions per second, in one run,
for the code before the store (tasks in memory only), SQLite (the default) and PostgreSQL.

    python -m loadtests.bench_store --output /tmp/tessera-bench/store \
        [--seconds 10] [--concurrency 16]

Each server runs in its own process on a fresh local Ray, one after the other, and is measured
with bench_ingress's loop (submit, then poll once). The in-memory baseline is this repository
at the commit before `serve_app/db` was added, checked out into a temporary git worktree;
PostgreSQL 15 is started on 127.0.0.1 for its turn (skipped if it is not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from loadtests.bench_ingress import level
from loadtests.common import import_tiny, write_report

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import sys
from loadtests.common import start_local_server
url, keys, stop = start_local_server(
    families={"flux": {"num_replicas": 1, "max_queued": 100_000}},
    limits={"max_queued_per_tenant": 100_000})
print("READY", url, ",".join(keys), flush=True)
sys.stdin.read()
stop()
"""


def baseline_worktree() -> tuple[str, Path]:
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "-1", "--",
                            "serve_app/db/engine.py"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    rev = subprocess.run(["git", "rev-parse", f"{added}^"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    path = Path(tempfile.mkdtemp(prefix="tessera-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT,
                   check=True, capture_output=True)
    return rev, path


def measure(cwd: Path, env: dict, seconds: float, concurrency: int) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=cwd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(cwd), **env})
    try:
        line = ""
        while not line.startswith("READY"):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"server in {cwd} exited with {proc.returncode}")
        _, url, keys = line.split()
        keys = keys.split(",")

        async def go():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                models = {k: await import_tiny(client, k) for k in keys}
            return await level(url, keys, models, concurrency, seconds)

        return asyncio.run(go())
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="ingress accept rate by task store")
    p.add_argument("--output", required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    rows = []
    rev, tree = baseline_worktree()
    try:
        rows.append({"store": f"in memory (code at {rev[:10]})",
                     **measure(tree, {}, args.seconds, args.concurrency)})
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    rows.append({"store": "SQLite (WAL, default)",
                 **measure(ROOT, {}, args.seconds, args.concurrency)})
    from loadtests.local_postgres import Postgres, available

    if available():
        from cluster.local import free_port

        pg = Postgres(free_port()).init().start()
        try:
            rows.append({"store": "PostgreSQL 15",
                         **measure(ROOT, {"TESSERA_DATABASE_URL": pg.url}, args.seconds,
                                   args.concurrency)})
        finally:
            pg.destroy()
    base = rows[0]["accepted_per_s"] or 1
    lines = [f"Accepted submissions per second at concurrency {args.concurrency} "
             f"({args.seconds:g} s each, submit then one poll):", "",
             "| store | accepted/s | vs in memory | submit p50 ms | submit p99 ms |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['store']} | {r['accepted_per_s']} | {r['accepted_per_s'] / base:.2f} | "
              f"{r['submit_latency_ms']['p50']} | {r['submit_latency_ms']['p99']} |"
              for r in rows]
    write_report(args.output, "store", rows, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
