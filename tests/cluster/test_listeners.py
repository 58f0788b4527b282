"""`make serve` (`python -m serve_app.run`) keeps every listener of its process tree on
loopback (Ray's GCS, raylet, agents and workers, Serve's proxy), but the one Serve hard-codes.
Started here as a process of its own with a FLUX-only config, stopped by PID."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.support.api import free_port

pytestmark = pytest.mark.cluster


def listeners(root: psutil.Process) -> set[tuple[str, int, str]]:
    tree = [root, *root.children(recursive=True)]
    pids = {p.pid: p for p in tree}
    found = set()
    for conn in psutil.net_connections("inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                name = pids[conn.pid].name()
            except psutil.Error:
                name = "?"
            found.add((conn.laddr.ip, conn.laddr.port, name))
    return found


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def test_make_serve_listens_on_loopback_only(tmp_path):
    port = free_port()
    config = tmp_path / "args.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nfamilies:\n  flux:\n    num_replicas: 1\n")
    env = {**os.environ, "TESSERA_API_KEYS": "k=t", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "serve_app.run", "--port", str(port),
                             "--config", str(config)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "the server exited"
            time.sleep(1)
        else:
            raise AssertionError("the server did not become ready")
        time.sleep(2)  # the replicas' own servers are up by now
        found = listeners(psutil.Process(proc.pid))
        names = {name for _, _, name in found}
        assert any("gcs" in n for n in names) and any("raylet" in n for n in names), found
        assert (("127.0.0.1", port) in {(ip, p) for ip, p, _ in found}), found
        wide = sorted(f for f in found if not is_loopback(f[0]))
        # The one exception, documented in the README: Serve 2.60 binds each replica's
        # inter-deployment gRPC server to [::]:0 (ray/serve/_private/replica.py), with no
        # setting to change it.
        assert all(name.startswith("ray::ServeReplica:") for _, _, name in wide), wide
        assert len(wide) <= 2, wide  # one per replica (ingress, FLUX)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
