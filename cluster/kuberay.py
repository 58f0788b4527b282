"""The KubeRay RayService manifest, generated from the same config the local run uses.

    python -m cluster.kuberay cluster/tessera-cluster.yaml > cluster/ray-service.yaml

`serveConfigV2` is written from a validated `TesseraConfig` (never copied by hand); the cluster
settings (image, GPU worker groups, PVC, secrets) come from the `kuberay` section of the input
file. MinIO and the OpenTelemetry collector reach the pods through environment variables, and
the Hugging Face cache sits on a PVC so weights are downloaded once.
"""

from __future__ import annotations

import importlib.metadata
import sys

import yaml
from pydantic import BaseModel, ConfigDict, Field

from deployments.registry import resolve_families
from serve_app.core.config import TesseraConfig

# the installed Ray, which pyproject.toml pins: the cluster runs the version the code was tested on
RAY_VERSION = importlib.metadata.version("ray")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuGroup(_Strict):
    name: str = "gpu"
    gpus_per_pod: int = Field(1, ge=1)
    cpus_per_pod: int = Field(8, ge=1)
    memory_per_pod: str = "64Gi"
    min_pods: int = Field(0, ge=0)
    max_pods: int = Field(8, ge=1)
    pods: int = Field(1, ge=0)
    accelerator_label: str | None = Field(None, description="e.g. nvidia.com/gpu.product value")


class ClusterSettings(_Strict):
    name: str = Field("tessera", pattern=r"^[a-z]([-a-z0-9]{0,45}[a-z0-9])?$")
    image: str = "registry.example.com/tessera:0.1.0"
    head_cpus: int = 4
    head_memory: str = "16Gi"
    gpu_groups: list[GpuGroup] = [GpuGroup()]
    hf_cache_pvc: str = "tessera-hf-cache"
    hf_cache_size: str = "500Gi"
    hf_cache_storage_class: str | None = None
    minio_secret: str = "tessera-minio"
    minio_endpoint: str = "tessera-minio:9000"
    api_keys_secret: str = "tessera-api-keys"
    otlp_endpoint: str = "http://tessera-otel-collector:4318"
    # the task store: a Secret whose TESSERA_DATABASE_URL names PostgreSQL (cluster/postgres.yaml
    # or your own database)
    database_secret: str = "tessera-database"
    # the data dir (dev key, link-signing secret, tiny checkpoints) on a volume every pod mounts
    data_pvc: str = "tessera-data"
    data_size: str = "20Gi"
    data_storage_class: str | None = None
    # GCS fault tolerance: the head's cluster state in Redis (cluster/redis.yaml), so a head-pod
    # restart keeps the Serve application
    redis_address: str | None = "redis://tessera-redis:6379"
    redis_secret: str = "tessera-redis"
    # HTTPS: a kubernetes.io/tls Secret (tls.crt, tls.key) every pod mounts; Serve's proxies
    # then speak TLS on the serve port, and the probes ask it over https
    tls_secret: str | None = None


class ClusterFile(_Strict):
    """cluster/tessera-cluster.yaml: the Tessera config plus where it runs."""

    tessera: dict = {}
    kuberay: ClusterSettings = ClusterSettings()


TLS_DIR = "/etc/tessera/tls"


def serve_config(config: TesseraConfig, tls: bool = False) -> dict:
    """The Serve config (what `serve run` and serveConfigV2 read) for this Tessera config."""
    args = config.model_dump(mode="json", exclude_defaults=True)
    http: dict = {"host": "0.0.0.0", "port": SERVE_PORT}
    if tls:
        http.update(ssl_certfile=f"{TLS_DIR}/tls.crt", ssl_keyfile=f"{TLS_DIR}/tls.key")
    return {
        "proxy_location": "EveryNode",
        "http_options": http,
        "applications": [{
            "name": "tessera", "route_prefix": "/",
            "import_path": "serve_app.builder:build_app", "args": args,
        }],
    }


def _env(s: ClusterSettings) -> list[dict]:
    def secret(name, secret_name, key):
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}

    return [
        {"name": "TESSERA_S3_ENDPOINT", "value": s.minio_endpoint},
        secret("TESSERA_S3_ACCESS_KEY", s.minio_secret, "TESSERA_S3_ACCESS_KEY"),
        secret("TESSERA_S3_SECRET_KEY", s.minio_secret, "TESSERA_S3_SECRET_KEY"),
        secret("TESSERA_API_KEYS", s.api_keys_secret, "TESSERA_API_KEYS"),
        secret("TESSERA_DATABASE_URL", s.database_secret, "TESSERA_DATABASE_URL"),
        {"name": "TESSERA_OTLP_ENDPOINT", "value": s.otlp_endpoint},
        {"name": "TESSERA_DATA_DIR", "value": "/data/tessera"},
        {"name": "HF_HOME", "value": "/data/hf"},
    ]


def _pod(s: ClusterSettings, container: str, cpus: int, memory: str, gpus: int) -> dict:
    limits = {"cpu": str(cpus), "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    spec: dict = {
        "containers": [{
            "name": container, "image": s.image, "env": _env(s),
            "resources": {"limits": limits, "requests": dict(limits)},
            "volumeMounts": [{"name": "hf-cache", "mountPath": "/data/hf"},
                             {"name": "tessera-data", "mountPath": "/data/tessera"},
                             {"name": "ray-logs", "mountPath": "/tmp/ray"}],
        }],
        "volumes": [{"name": "hf-cache",
                     "persistentVolumeClaim": {"claimName": s.hf_cache_pvc}},
                    {"name": "tessera-data",
                     "persistentVolumeClaim": {"claimName": s.data_pvc}},
                    {"name": "ray-logs", "emptyDir": {}}],
    }
    if s.tls_secret:
        spec["containers"][0]["volumeMounts"].append(
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        spec["volumes"].append({"name": "tls", "secret": {"secretName": s.tls_secret}})
    if gpus:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists",
                                "effect": "NoSchedule"}]
    # the label the NetworkPolicy selects this cluster's Ray pods by (KubeRay's own
    # ray.io/cluster carries a generated suffix under a RayService)
    return {"metadata": {"labels": {POD_LABEL: s.name, "app.kubernetes.io/part-of": "tessera"}},
            "spec": spec}


POD_LABEL = "tessera.dev/ray-cluster"
SERVE_PORT, DASHBOARD_PORT, DASHBOARD_AGENT_PORT, METRICS_PORT = 8000, 8265, 52365, 8080


def network_policy(s: ClusterSettings) -> dict:
    """Only Serve's HTTP port is open to every client. Ray's own ports (GCS, raylet, object
    manager, workers) answer only the cluster's Ray pods; the dashboard (and its agent), which
    the KubeRay operator needs to deploy and watch the Serve app, answers only the operator;
    the metrics port only the OpenTelemetry collector."""
    def ray_pods() -> dict:  # a new dict each time: no YAML anchors in the manifest
        return {"podSelector": {"matchLabels": {POD_LABEL: s.name}}}

    def from_pods(name: str) -> dict:
        return {"namespaceSelector": {},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}

    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": f"{s.name}-ray"},
        "spec": {
            **ray_pods(), "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [ray_pods()]},
                {"ports": [{"protocol": "TCP", "port": SERVE_PORT}]},
                {"from": [from_pods("kuberay-operator")],
                 "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT},
                           {"protocol": "TCP", "port": DASHBOARD_AGENT_PORT}]},
                {"from": [from_pods("otel-collector")],
                 "ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ]},
    }


def ray_service(config: TesseraConfig, s: ClusterSettings) -> dict:
    head = _pod(s, "ray-head", s.head_cpus, s.head_memory, 0)
    head["spec"]["containers"][0]["ports"] = [
        {"containerPort": 6379, "name": "gcs"},
        {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
        {"containerPort": SERVE_PORT, "name": "serve"},
        {"containerPort": METRICS_PORT, "name": "metrics"}]
    workers = []
    for g in s.gpu_groups:
        pod = _pod(s, "ray-worker", g.cpus_per_pod, g.memory_per_pod, g.gpus_per_pod)
        if g.accelerator_label:
            pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": g.accelerator_label}
        if s.tls_secret:  # KubeRay's own Serve probe asks over http: over https instead
            pod["spec"]["containers"][0].update(serve_probes())
        workers.append({
            "groupName": g.name, "replicas": g.pods, "minReplicas": g.min_pods,
            "maxReplicas": g.max_pods, "rayStartParams": {}, "template": pod})
    cluster: dict = {"rayVersion": RAY_VERSION}
    if s.redis_address:
        cluster["gcsFaultToleranceOptions"] = {
            "redisAddress": s.redis_address,
            "redisPassword": {"valueFrom": {"secretKeyRef": {"name": s.redis_secret,
                                                             "key": "password"}}}}
    return {
        "apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": s.name},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(config, tls=bool(s.tls_secret)),
                                            sort_keys=False),
            "rayClusterConfig": {
                **cluster,
                # KubeRay adds worker pods only when the in-tree autoscaler is on
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"idleTimeoutSeconds": 300, "upscalingMode": "Default"},
                # the head runs the ingress and the actors, never a model. Its dashboard
                # listens on the pod's address because the KubeRay operator deploys the Serve
                # app through it; the NetworkPolicy lets only the operator reach it.
                "headGroupSpec": {"rayStartParams": {"num-gpus": "0",
                                                     "dashboard-host": "0.0.0.0"},
                                  "template": head},
                "workerGroupSpecs": workers,
            },
        },
    }


def serve_probes() -> dict:
    """A worker pod is ready while its Serve proxy answers its health check, over https (the
    certificate names the public host, not localhost, so it is not verified here)."""
    check = ("wget --no-check-certificate -T 2 -q -O- "
             f"https://localhost:{SERVE_PORT}/-/healthz | grep success")
    probe = {"exec": {"command": ["bash", "-c", check]}, "periodSeconds": 5,
             "timeoutSeconds": 2, "failureThreshold": 1}
    return {"readinessProbe": probe,
            "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 120}}


def shared_pvc(name: str, size: str, storage_class: str | None) -> dict:
    """A volume every Ray pod mounts (ReadWriteMany)."""
    spec = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name}, "spec": spec}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value: str):
    # multi-line strings (serveConfigV2) as readable literal blocks
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(cluster_file: dict) -> str:
    parsed = ClusterFile.model_validate(cluster_file)
    # the cluster's config is validated like any other (env does not leak in: secrets stay out)
    config = TesseraConfig.model_validate(parsed.tessera)
    resolve_families(config)  # family names are checked as the builder checks them
    k = parsed.kuberay
    docs = [shared_pvc(k.hf_cache_pvc, k.hf_cache_size, k.hf_cache_storage_class),
            shared_pvc(k.data_pvc, k.data_size, k.data_storage_class),
            ray_service(config, k), network_policy(k)]
    header = ("# Generated by `python -m cluster.kuberay cluster/tessera-cluster.yaml`; "
              "edit that file, not this one.\n")
    return header + yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0] if argv else "cluster/tessera-cluster.yaml") as f:
        sys.stdout.write(render(yaml.safe_load(f) or {}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
