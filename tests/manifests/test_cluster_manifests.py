"""Offline checks of the Kubernetes manifests in cluster/."""

from __future__ import annotations

import yaml

from tests.support.crd import CLUSTER


def test_minio_manifest_is_complete_and_consistent():
    docs = [d for d in yaml.safe_load_all((CLUSTER / "minio.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Secret", "Service", "StatefulSet"}
    secret = kinds["Secret"]["stringData"]
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "TESSERA_S3_ACCESS_KEY",
            "TESSERA_S3_SECRET_KEY"} <= set(secret)
    assert secret["TESSERA_S3_ACCESS_KEY"] == secret["MINIO_ROOT_USER"]
    sts = kinds["StatefulSet"]["spec"]
    labels = sts["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in sts["selector"]["matchLabels"].items())
    assert all(labels[k] == v for k, v in kinds["Service"]["spec"]["selector"].items())
    container = sts["template"]["spec"]["containers"][0]
    assert container["envFrom"][0]["secretRef"]["name"] == kinds["Secret"]["metadata"]["name"]
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {t["metadata"]["name"] for t in sts["volumeClaimTemplates"]}
    ports = {p["port"] for p in kinds["Service"]["spec"]["ports"]}
    assert 9000 in ports


def test_otel_collector_and_dashboard():
    import json

    docs = [d for d in yaml.safe_load_all((CLUSTER / "otel-collector.yaml").read_text()) if d]
    config = yaml.safe_load(docs[0]["data"]["collector.yaml"])
    assert 4318 in [int(p["containerPort"]) for p in
                    docs[1]["spec"]["template"]["spec"]["containers"][0]["ports"]]
    for pipeline in config["service"]["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])
    dashboard = json.loads((CLUSTER / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    from serve_app.core.metrics import _metrics  # noqa: F401  (names below are defined there)

    for name in ("tasks_total", "queue_depth", "queue_wait_seconds", "generation_seconds",
                 "end_to_end_seconds", "images_total", "batch_size", "task_errors_total",
                 "storage_seconds"):
        assert f"ray_tessera_{name}" in exprs, name


def _by_kind(name: str) -> dict:
    return {d["kind"]: d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d}


def _wired(kinds: dict, port: int) -> dict:
    """The StatefulSet's pods are what the Service selects, and each claim is mounted."""
    sts = kinds["StatefulSet"]["spec"]
    labels = sts["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in sts["selector"]["matchLabels"].items())
    assert all(labels[k] == v for k, v in kinds["Service"]["spec"]["selector"].items())
    assert port in {p["port"] for p in kinds["Service"]["spec"]["ports"]}
    container = sts["template"]["spec"]["containers"][0]
    assert {m["name"] for m in container["volumeMounts"]} == {
        t["metadata"]["name"] for t in sts["volumeClaimTemplates"]}
    return container


def test_postgres_manifest_feeds_the_database_url_the_pods_read(ray_service):
    kinds = _by_kind("postgres.yaml")
    assert set(kinds) == {"Secret", "Service", "StatefulSet"}
    container = _wired(kinds, 5432)
    secret = kinds["Secret"]
    data = secret["stringData"]
    # the URL names this Service, user, password and database
    url = data["TESSERA_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@tessera-postgres:5432/" in url
    assert f"{data['POSTGRES_USER']}:{data['POSTGRES_PASSWORD']}@" in url
    assert url.endswith("/" + data["POSTGRES_DB"])
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
    assert refs == {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"}
    # every Ray pod reads TESSERA_DATABASE_URL from that Secret
    cluster = ray_service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for pod in pods:
        env = {e["name"]: e for e in pod["template"]["spec"]["containers"][0]["env"]}
        ref = env["TESSERA_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": "TESSERA_DATABASE_URL"}


def test_redis_backs_gcs_fault_tolerance_and_the_data_dir_is_on_a_volume(manifest, ray_service):
    kinds = _by_kind("redis.yaml")
    _wired(kinds, 6379)
    ft = ray_service["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert ft["redisAddress"] == f"redis://{kinds['Service']['metadata']['name']}:6379"
    assert ft["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == (
        kinds["Secret"]["metadata"]["name"])
    claims = {d["metadata"]["name"] for d in manifest if d["kind"] == "PersistentVolumeClaim"}
    cluster = ray_service["spec"]["rayClusterConfig"]
    for pod in [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]:
        spec = pod["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        mount = next(m for m in spec["containers"][0]["volumeMounts"]
                     if m["mountPath"] == env["TESSERA_DATA_DIR"])
        assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] in claims


def test_dockerfile_builds_on_the_pinned_ray():
    import importlib.metadata

    dockerfile = (CLUSTER.parent / "Dockerfile").read_text()
    base = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM"))
    assert base == f"rayproject/ray:{importlib.metadata.version('ray')}-py311-gpu"
    assert "pip install" in dockerfile and "serve_app" in dockerfile
