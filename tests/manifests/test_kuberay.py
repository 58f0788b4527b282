"""cluster/ray-service.yaml: generated from the one config, and valid for KubeRay v1.7.0."""

from __future__ import annotations

import copy

import pytest
import yaml

from cluster.kuberay import render
from serve_app.core.config import load_config
from tests.support.crd import CLUSTER, SHARED, docs, validate


def test_manifest_is_generated_not_hand_edited(manifest):
    source = yaml.safe_load((CLUSTER / "tessera-cluster.yaml").read_text())
    assert docs(render(source)) == manifest, (
        "cluster/ray-service.yaml is stale: run python -m cluster.kuberay "
        "cluster/tessera-cluster.yaml > cluster/ray-service.yaml")


def test_ray_service_passes_the_crd_and_operator_checks(ray_service):
    assert validate(ray_service) == []


@pytest.mark.parametrize("sample", sorted((SHARED / "samples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_validator_accepts_the_official_samples(sample):
    for doc in docs(sample.read_text()):
        if doc.get("kind") in ("RayService", "RayCluster"):
            assert validate(doc) == [], sample.name


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(maxReplica=3),
     "maxReplica"),
    (lambda d: d["spec"]["rayClusterConfig"].update(enableInTreeAutoscale=True),
     "enableInTreeAutoscale"),
    (lambda d: d["metadata"].update(name="a" * 48), "47"),
    (lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(replicas=99),
     "maxReplicas"),
    (lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"].update(
        containers=[]), "container"),
])
def test_validator_catches_mistakes(ray_service, mutate, expect):
    broken = copy.deepcopy(ray_service)
    mutate(broken)
    errors = validate(broken)
    assert errors and any(expect in e for e in errors), errors


def _known_keys(model) -> set[str]:
    return set(model.__fields__) | {f.alias for f in model.__fields__.values() if f.alias}


def test_serve_config_is_valid_for_ray_and_for_tessera(ray_service):
    from ray.serve.schema import HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

    serve_cfg = yaml.safe_load(ray_service["spec"]["serveConfigV2"])
    ServeDeploySchema.parse_obj(serve_cfg)
    # Ray's schema ignores unknown keys: check every name ourselves
    assert set(serve_cfg) <= _known_keys(ServeDeploySchema)
    assert set(serve_cfg["http_options"]) <= _known_keys(HTTPOptionsSchema)
    (app,) = serve_cfg["applications"]
    assert set(app) <= _known_keys(ServeApplicationSchema)
    assert app["import_path"] == "serve_app.builder:build_app"
    config = load_config(app["args"], environ={})  # our own model rejects unknown keys
    assert config.families["flux"].num_gpus == 1


def test_cluster_shape(manifest, ray_service):
    cluster = ray_service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["rayVersion"] == __import__("ray").__version__
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    for group in cluster["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        assert int(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    env = {e["name"]: e for e in head["env"]}
    assert {"TESSERA_S3_ENDPOINT", "TESSERA_S3_ACCESS_KEY", "TESSERA_S3_SECRET_KEY",
            "TESSERA_OTLP_ENDPOINT", "TESSERA_API_KEYS", "HF_HOME"} <= set(env)
    assert env["TESSERA_S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tessera-minio"
    pvc = next(d for d in manifest if d["kind"] == "PersistentVolumeClaim")
    mounts = {m["name"]: m["mountPath"] for m in head["volumeMounts"]}
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
              for v in cluster["headGroupSpec"]["template"]["spec"]["volumes"]}
    hf_volume = next(name for name, path in mounts.items() if path == env["HF_HOME"]["value"])
    assert claims[hf_volume] == pvc["metadata"]["name"]  # weights are downloaded once
    minio = docs((CLUSTER / "minio.yaml").read_text())
    assert env["TESSERA_S3_ENDPOINT"]["value"].split(":")[0] == next(
        d for d in minio if d["kind"] == "Service")["metadata"]["name"]


def test_a_network_policy_keeps_rays_ports_inside_the_cluster(manifest, ray_service):
    policy = next(d for d in manifest if d["kind"] == "NetworkPolicy")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    cluster = ray_service["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]]
    for template in templates:  # every Ray pod is behind the policy
        assert selector.items() <= template["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = policy["spec"]["ingress"]
    # open to every client: Serve's HTTP port, and nothing else
    open_rules = [r for r in rules if "from" not in r]
    assert [p["port"] for r in open_rules for p in r["ports"]] == [8000]
    # every other rule names who may connect; Ray's own ports only from the cluster's pods
    any_port = [r for r in rules if "ports" not in r]
    assert any_port == [{"from": [{"podSelector": {"matchLabels": selector}}]}]
    dashboard = next(r for r in rules if any(p["port"] == 8265 for p in r.get("ports", [])))
    assert dashboard["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "kuberay-operator"}


def test_https_from_a_tls_secret_on_every_pod(ray_service):
    """The Secret named by kuberay.tls_secret is mounted on every Ray pod, Serve's proxies read
    the certificate from it, and the workers' Serve probes ask over https."""
    serve_cfg = yaml.safe_load(ray_service["spec"]["serveConfigV2"])
    assert serve_cfg["http_options"]["ssl_certfile"] == "/etc/tessera/tls/tls.crt"
    assert serve_cfg["http_options"]["ssl_keyfile"] == "/etc/tessera/tls/tls.key"
    cluster = ray_service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == "tessera-tls"
        mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["tls"]["mountPath"] == "/etc/tessera/tls" and mounts["tls"]["readOnly"]
    for group in cluster["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            assert "https://localhost:8000/-/healthz" in " ".join(
                container[probe]["exec"]["command"])
    plain = yaml.safe_load((CLUSTER / "tessera-cluster.yaml").read_text())
    plain["kuberay"].pop("tls_secret")
    service = next(d for d in docs(render(plain)) if d["kind"] == "RayService")
    assert "ssl_certfile" not in yaml.safe_load(service["spec"]["serveConfigV2"])["http_options"]
    assert validate(service) == []
