"""A multi-node Ray cluster on one machine: a head without GPUs, workers advertising fake GPUs.

    python -m cluster.local --gpu-nodes 2 [--port 8000]

Everything binds to 127.0.0.1. Family replicas ask for `num_gpus`, so Ray places them only on the
GPU nodes; without a real GPU they run on the CPU (`device: auto`). Used by the `cluster` tests and
the scheduling benchmarks; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

# Serve's HAProxy ingress: HAProxy listens on the HTTP port and forwards straight to the
# ingress replicas, skipping Serve's Python proxy (about 6.5 ms per request on two cores).
# Throughput-optimized Serve also runs user code and the router on the replica's own loop.
HAPROXY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, gpu_nodes: int = 2, head_cpus: int = 2, node_cpus: int = 2):
        # Keep every node on loopback (see ../shared/notes/ray-on-this-machine.md).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray
        from ray.cluster_utils import Cluster

        self.node_cpus = node_cpus
        self.cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=head_cpus, num_gpus=0, node_ip_address="127.0.0.1",
            include_dashboard=False))
        self.gpu_nodes: list = []
        for _ in range(gpu_nodes):
            self.add_gpu_node()
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, log_to_driver=False, configure_logging=False)

    def add_gpu_node(self):
        node = self.cluster.add_node(num_cpus=self.node_cpus, num_gpus=1,
                                     node_ip_address="127.0.0.1")
        self.gpu_nodes.append(node)
        return node

    def remove_gpu_node(self, node) -> None:
        self.cluster.remove_node(node)
        self.gpu_nodes.remove(node)

    def serve(self, args: dict, port: int | None = None) -> str:
        from ray import serve

        from serve_app.builder import build_app

        port = port or free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        args = {"data_dir": tempfile.mkdtemp(prefix="tessera-cluster-"), **args}
        serve.run(build_app(args), name="tessera", route_prefix="/")
        return f"http://127.0.0.1:{port}"

    def shutdown(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        self.cluster.shutdown()


def actor_nodes(class_name: str) -> list[str]:
    """Node ids of the live actors of a class (e.g. "ServeReplica:tessera:family-flux"), one
    per actor. Read from the GCS: the state API would need the dashboard, which stays off."""
    import ray

    return [a["Address"]["NodeID"] for a in ray._private.state.actors().values()
            if a["State"] == "ALIVE" and a["ActorClassName"] == class_name]


def actor_pids(class_name: str) -> list[int]:
    """Process ids of the live actors of a class (e.g. "TaskManager"): what a fault test kills."""
    import ray

    return [a["Pid"] for a in ray._private.state.actors().values()
            if a["State"] == "ALIVE" and a["ActorClassName"] == class_name]


def gpu_family_args(max_replicas: int = 2) -> dict:
    """FLUX on one GPU per replica, reacting within seconds (demo settings, not production's)."""
    return {"families": {"flux": {"num_gpus": 1, "num_cpus": 0.5, "autoscaling": {
        "min_replicas": 1, "max_replicas": max_replicas, "target_ongoing_requests": 1,
        "upscale_delay_s": 1, "downscale_delay_s": 3, "metrics_interval_s": 0.5,
        "look_back_period_s": 2}}}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu-nodes", type=int, default=2)
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args(argv)
    cluster = LocalCluster(args.gpu_nodes)
    try:
        url = cluster.serve(gpu_family_args(max_replicas=args.gpu_nodes), port=args.port)
        print(f"Tessera on {args.gpu_nodes} fake GPU nodes at {url}; Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
