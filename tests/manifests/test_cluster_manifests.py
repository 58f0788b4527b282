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
