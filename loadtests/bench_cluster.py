"""Spread and autoscaler reaction times on a local cluster with 1, 2 and 4 fake GPU nodes.

    python -m loadtests.bench_cluster --output /tmp/tessera-bench/cluster [--nodes 1 2 4] \
        [--tasks-per-node 12] [--size 512x512] [--steps 30]

For each node count, a fresh local cluster (`cluster.local`: a head without GPUs and N
workers with one fake GPU each) serves the tiny FLUX with one GPU per replica, autoscaling from 1
to N replicas (`gpu_family_args`: target 1 ongoing request, 1 s up / 3 s down delays, 2 s
look-back). Once the first replica is warm, a burst of `tasks-per-node x N` tasks is submitted at
once. Measured:

- scale-up: seconds from the burst's first submit until the k-th replica's actor is alive;
- scale-down: seconds from the burst's last completion until the deployment is back to one;
- spread: how many of the burst's tasks each replica ran, and on which node (from the
  `tessera.replica` and `tessera.node` attributes of each task's `tessera.generate` span).

Each node count runs in its own process, so every cluster starts clean. This machine has two
cores: throughput cannot grow with fake nodes, but placement, spread and reaction times can be
measured.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtests.common import out_dir, write_report

KEY = "bench-cluster-key"
REPLICA_CLASS = "ServeReplica:tessera:family-flux"


def replicas() -> list[str]:
    from cluster.local import actor_nodes

    return actor_nodes(REPLICA_CLASS)


def spans_by_task(path: Path, task_ids: set[str]) -> dict[str, dict]:
    out = {}
    for line in path.read_text().splitlines():
        span = json.loads(line)
        attrs = span["attributes"]
        if span["name"] == "tessera.generate" and attrs.get("tessera.task_id") in task_ids:
            out[attrs["tessera.task_id"]] = attrs
    return out


def one(nodes: int, tasks_per_node: int, size: str, steps: int) -> dict:
    os.environ["TESSERA_API_KEYS"] = f"{KEY}=bench"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cluster.local import LocalCluster, gpu_family_args

    traces = Path(tempfile.mkdtemp(prefix="tessera-bench-cluster-")) / "traces.jsonl"
    t_start = time.perf_counter()
    cluster = LocalCluster(gpu_nodes=nodes, node_cpus=1)
    url = cluster.serve({**gpu_family_args(max_replicas=nodes),
                         "limits": {"task_deadline_s": 900, "max_queued_per_tenant": 10_000},
                         "tracing": {"exporter": "file", "path": str(traces)}})
    cluster_start_s = time.perf_counter() - t_start
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
            v = c.post("/v1/my-models/validate-hf", json={"hf_model_id": "tessera/tiny-flux"})
            model = c.post("/v1/my-models/import-hf",
                           json={"validation_id": v.json()["validation_id"]}).json()["id"]
            body = {"model": model, "prompt": "warm-up", "size": size,
                    "num_inference_steps": steps}

            def wait(task_id: str) -> dict:
                while True:
                    task = c.get(f"/v1/tasks/{task_id}").json()
                    if task["status"] in ("completed", "failed"):
                        return task
                    time.sleep(0.5)

            assert wait(c.post("/v1/images/generations", json=body).json()["task_id"])[
                "status"] == "completed"
            before = len(replicas())

            burst_at = time.time()
            ids = [c.post("/v1/images/generations",
                          json={**body, "prompt": f"burst {i}", "seed": i}).json()["task_id"]
                   for i in range(tasks_per_node * nodes)]
            submitted_s = time.time() - burst_at
            reached: dict[int, float] = {}
            pending = set(ids)
            tasks: dict[str, dict] = {}
            while pending:
                count = len(replicas())
                for k in range(before + 1, count + 1):
                    reached.setdefault(k, round(time.time() - burst_at, 2))
                for task_id in list(pending)[:20]:
                    task = c.get(f"/v1/tasks/{task_id}").json()
                    if task["status"] in ("completed", "failed"):
                        tasks[task_id] = task
                        pending.discard(task_id)
                time.sleep(0.25)
            last_done = max(t["completed_at"] for t in tasks.values())
            while len(replicas()) > 1 and time.time() - last_done < 300:
                time.sleep(0.25)
            down_s = round(time.time() - last_done, 2)
            failed = [t["error"] for t in tasks.values() if t["status"] != "completed"]

        time.sleep(6)  # spans are exported in batches every few seconds
        spans = spans_by_task(traces, set(ids))
        by_replica = collections.Counter(a["tessera.replica"] for a in spans.values())
        replica_node = {a["tessera.replica"]: a["tessera.node"] for a in spans.values()}
        node_names = {n.node_id: f"gpu-{i + 1}" for i, n in enumerate(cluster.gpu_nodes)}
        return {
            "nodes": nodes, "tasks": len(ids), "failed": failed,
            "cluster_start_s": round(cluster_start_s, 1), "submit_s": round(submitted_s, 2),
            "replicas_before": before, "max_replicas": max([before, *reached]),
            "scale_up_s": reached, "scale_down_s": down_s if nodes > 1 else None,
            "burst_s": round(last_done - burst_at, 2),
            "spread": sorted(({"replica": r, "node": node_names.get(replica_node[r], "?"),
                               "tasks": n} for r, n in by_replica.items()),
                             key=lambda x: x["node"]),
            "unattributed": len(ids) - sum(by_replica.values()),
        }
    finally:
        cluster.shutdown()


def markdown(rows: list[dict], args) -> str:
    lines = [f"Burst of {args.tasks_per_node} tasks per node (tiny FLUX {args.size}, "
             f"{args.steps} steps), autoscaling 1 → N replicas, one fake GPU each.", "",
             "| GPU nodes | tasks | replicas reached | scale-up (s from burst, per added "
             "replica) | back to 1 (s after last task) | tasks per replica (node) | lost |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        up = ", ".join(f"{k}: {v}" for k, v in sorted(r["scale_up_s"].items(),
                                                     key=lambda kv: int(kv[0]))) or "—"
        spread = ", ".join(f"{s['tasks']} ({s['node']})" for s in r["spread"])
        down = "—" if r["scale_down_s"] is None else r["scale_down_s"]
        lines.append(f"| {r['nodes']} | {r['tasks']} | {r['max_replicas']} | {up} | {down} | "
                     f"{spread} | {len(r['failed'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=out_dir("cluster"))
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--tasks-per-node", type=int, default=12)
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.tasks_per_node, args.size, args.steps)))
        return
    rows = []
    for n in args.nodes:  # a process per cluster: each starts clean
        proc = subprocess.run(
            [sys.executable, "-m", "loadtests.bench_cluster", "--one", str(n),
             "--tasks-per-node", str(args.tasks_per_node), "--size", args.size,
             "--steps", str(args.steps)],
            capture_output=True, text=True, env={**os.environ,
                                                 "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
        if proc.returncode:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"the {n}-node run failed")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    write_report(args.output, "cluster", rows, markdown(rows, args))


if __name__ == "__main__":
    main()
