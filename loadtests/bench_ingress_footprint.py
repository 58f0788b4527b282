"""An ingress replica's footprint: its resident memory and how long it takes to start, for one
or more checkouts of Tessera measured back to back on this machine.

    git worktree add /tmp/tessera-before <commit>      # the build to compare with
    python -m loadtests.bench_ingress_footprint --output /tmp/tessera-bench/footprint \\
        --tree /tmp/tessera-before --tree .

For each tree, in a process of its own whose `serve_app` is that tree's:

- import: a fresh interpreter imports the ingress application (`serve_app.api.app`), three
  times: seconds (median) and its peak resident memory;
- a local Ray and one Tessera app (one tiny FLUX replica) on 127.0.0.1; then, on the live
  ingress replica: its resident memory once up, the first `GET /v1/models` (a new replica is
  not serving until it can answer that), `validate-hf` of a tiny checkpoint, and a generation
  with a built-in tiny LoRA; its resident memory after them, and whether it mapped libtorch.

Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ML = ("torch", "diffusers", "transformers", "peft")
IMPORT = ("import resource, sys, time\n"
          "t = time.perf_counter()\n"
          "import serve_app.api.app\n"
          "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
          f" sorted(m for m in {ML!r} if m in sys.modules))\n")


def child() -> dict:
    """Runs in the measured tree (cwd and PYTHONPATH): prints its figures as JSON."""
    import httpx
    import psutil

    imports = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True,
                             check=True).stdout.split(" ", 2)
        imports.append((float(out[0]), int(out[1]) / 1024, out[2].strip()))
    os.environ.setdefault("TESSERA_API_KEYS", "bench-key=bench")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    import ray
    from ray import serve

    from serve_app.builder import build_app

    port = _free_port()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    data_dir = tempfile.mkdtemp(prefix="tessera-footprint-")
    try:
        serve.run(build_app({"data_dir": data_dir,
                             "families": {"flux": {"num_replicas": 1}}}), route_prefix="/")
        (pid,) = _pids("ServeReplica:default:ingress")
        ingress = psutil.Process(pid)
        started_rss = ingress.memory_info().rss
        headers = {"Authorization": "Bearer bench-key"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                          timeout=300, trust_env=False) as client:
            t0 = time.perf_counter()
            client.get("/v1/models").raise_for_status()
            first_models = time.perf_counter() - t0
            t0 = time.perf_counter()
            client.post("/v1/my-models/validate-hf",
                        json={"hf_model_id": "tessera/tiny-flux"}).raise_for_status()
            validate = time.perf_counter() - t0
            made = client.post("/v1/images/generations", json={
                "model": "tessera/tiny-flux", "prompt": "a lighthouse", "seed": 1,
                "loras": [{"path": "tessera/tiny-flux-lora", "scale": 0.8}]})
            made.raise_for_status()
            task_id = made.json()["task_id"]
            while client.get(f"/v1/tasks/{task_id}").json()["status"] in (
                    "queued", "in_progress"):
                time.sleep(0.2)
        maps = Path(f"/proc/{pid}/maps").read_text()
        import serve_app

        return {
            "code": str(Path(serve_app.__file__).parents[1]),
            "import_s": round(statistics.median(i[0] for i in imports), 3),
            "import_peak_rss_mb": round(statistics.median(i[1] for i in imports), 1),
            "import_loads": imports[0][2],
            "replica_rss_started_mb": round(started_rss / 2**20, 1),
            "first_models_s": round(first_models, 3),
            "validate_tiny_s": round(validate, 3),
            "replica_rss_after_requests_mb": round(ingress.memory_info().rss / 2**20, 1),
            "replica_maps_libtorch": "libtorch" in maps,
        }
    finally:
        serve.shutdown()
        ray.shutdown()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids(title: str) -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if any(title in part for part in p.info["cmdline"] or ())]


def measure(tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, str(HERE), "--child"], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def revision(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


ROWS = [("import_s", "import of the ingress app (s, median of 3)"),
        ("import_peak_rss_mb", "peak RSS of that import (MB)"),
        ("import_loads", "of torch, diffusers, transformers, peft, loaded by the import"),
        ("replica_rss_started_mb", "ingress replica RSS once up (MB)"),
        ("first_models_s", "its first GET /v1/models (s)"),
        ("validate_tiny_s", "validate-hf of tessera/tiny-flux (s)"),
        ("replica_rss_after_requests_mb", "its RSS after those and a tiny-LoRA generation (MB)"),
        ("replica_maps_libtorch", "libtorch mapped in the replica")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path,
                        help="a checkout to measure (repeat; default: this one)")
    parser.add_argument("--output", default=None, help="default: tessera-bench/footprint "
                        "in the temporary directory")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # in the measured tree: only its own code and this file's
        print(json.dumps(child()))
        return
    from loadtests.common import out_dir, write_report
    trees = [t.resolve() for t in (args.tree or [HERE.parents[1]])]
    results = {f"{t.name}@{revision(t)}": measure(t) for t in trees}
    names = list(results)
    lines = ["| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(str(results[n][key]) for n in names) + " |")
    write_report(args.output or out_dir("footprint"), "footprint", results,
                 "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
