"""Offline checks of the Kubernetes manifests in cluster/."""

from __future__ import annotations

from pathlib import Path

import yaml

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


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
