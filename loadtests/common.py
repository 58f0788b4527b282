"""Shared pieces of the load tests: a loopback-only client, model import, percentiles."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import statistics
from pathlib import Path
from urllib.parse import urlsplit

import httpx


def out_dir(name: str) -> str:
    """Where a benchmark writes by default: outside the tree (the docs keep the figures, and
    loadtests/results/ only the raw files they cite)."""
    import tempfile

    return os.path.join(tempfile.gettempdir(), "tessera-bench", name)


def require_loopback(url: str) -> None:
    """Load is only ever sent to this machine."""
    host = urlsplit(url).hostname or ""
    addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                                for a in addresses):
        raise SystemExit(f"refusing to send load to {url}: only loopback addresses are allowed")


def api_keys(cli_keys: list[str] | None) -> list[str]:
    keys = cli_keys or [k for k in os.environ.get("TESSERA_API_KEY", "").split(",") if k]
    if not keys:
        raise SystemExit("give --api-key (repeat it for several tenants) or TESSERA_API_KEY")
    return keys


async def import_tiny(client: httpx.AsyncClient, key: str, family: str = "flux") -> str:
    headers = {"Authorization": f"Bearer {key}"}
    r = await client.post("/v1/my-models/validate-hf", headers=headers,
                          json={"hf_model_id": f"tessera/tiny-{family}"})
    r.raise_for_status()
    r = await client.post("/v1/my-models/import-hf", headers=headers,
                          json={"validation_id": r.json()["validation_id"]})
    r.raise_for_status()
    return r.json()["id"]


def p50_ms(fn, repeats: int, sync=lambda: None) -> float:
    """The median of `repeats` timed calls of `fn` in milliseconds, after one warm-up call
    (first-call allocations, kernel choices, caches filled); `sync` drains a device's queue
    on both sides of each."""
    import time

    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99),
            "mean": round(statistics.fmean(ordered), 2), "n": len(ordered)}


def start_local_apps(apps: dict[str, dict], port: int = 0):
    """Tessera apps on a fresh local Ray, for benchmarks run without TESSERA_URL.

    `apps` maps a route name ("" for the root) to its config args; the apps share one data dir
    and each named app gets its own instance (task and model actors). Returns
    (base_url, api_keys, stop).
    """
    import tempfile

    os.environ.setdefault("TESSERA_API_KEYS", "bench-key-a=bench-a,bench-key-b=bench-b")
    # Torn down whole, with no load balancer to drain: behind HAProxy, Serve would keep each
    # ingress replica up 30 s after shutdown began (read by the replica when it starts).
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    import ray
    from ray import serve

    from cluster.local import free_port
    from serve_app.builder import build_app

    port = port or free_port()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    data_dir = tempfile.mkdtemp(prefix="tessera-bench-")
    for name, args in apps.items():
        named = {"instance": f"bench-{name}"} if name else {}
        serve.run(build_app({"data_dir": data_dir, **named, **args}), name=name or "bench",
                  route_prefix=f"/{name}")

    def stop():
        serve.shutdown()
        ray.shutdown()

    keys = [kv.split("=")[0] for kv in os.environ["TESSERA_API_KEYS"].split(",")]
    return f"http://127.0.0.1:{port}", keys, stop


def start_local_server(families: dict | None = None, limits: dict | None = None, port: int = 0):
    """One Tessera app at the root of a fresh local Ray (default: one FLUX replica)."""
    return start_local_apps({"": {"families": families or {"flux": {"num_replicas": 1}},
                                  "limits": limits or {}}}, port)


def write_report(output: str, name: str, report, markdown: str) -> None:
    """<output>/<name>.json and <output>/<name>.md, and the Markdown on stdout."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.md").write_text(markdown)
    print(markdown)
