"""Offline validation of KubeRay manifests against the v1.7.0 CRDs in ../shared/kuberay/.

Does what the API server and the operator would (see ../shared/kuberay/README.md): defaults are
applied before validating, `template.metadata: null` is dropped, unknown fields are rejected
(the server would drop them silently), and the operator's Go-side checks are repeated.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path

import jsonschema
import yaml

SHARED = Path(__file__).resolve().parents[3] / "shared" / "kuberay"
CLUSTER = Path(__file__).resolve().parents[2] / "cluster"  # this repository's manifests


def docs(text: str) -> list[dict]:
    """The YAML documents of a manifest file."""
    return [d for d in yaml.safe_load_all(text) if d]
CRD_FILES = {"RayService": "ray.io_rayservices.yaml", "RayCluster": "ray.io_rayclusters.yaml"}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@cache
def schema(kind: str) -> dict:
    crd = yaml.safe_load((SHARED / "crds" / CRD_FILES[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return _strict(version["schema"]["openAPIV3Schema"])


def _strict(node):
    """Reject keys a schema object does not declare, unless it preserves unknown fields."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _apply_defaults(node: dict, value):
    if isinstance(value, dict) and node.get("type") == "object":
        for key, prop in node.get("properties", {}).items():
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
            if key in value:
                _apply_defaults(prop, value[key])
    elif isinstance(value, list) and "items" in node:
        for item in value:
            _apply_defaults(node["items"], item)


def _drop_null_template_metadata(value):
    if isinstance(value, dict):
        template = value.get("template")
        if isinstance(template, dict) and "metadata" in template and template["metadata"] is None:
            del template["metadata"]
        for v in value.values():
            _drop_null_template_metadata(v)
    elif isinstance(value, list):
        for v in value:
            _drop_null_template_metadata(v)


def _cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterConfig"] if doc["kind"] == "RayService" else doc["spec"]


def operator_errors(doc: dict) -> list[str]:
    """The operator's own checks (ray-operator/controllers/ray/utils/validation.go)."""
    errors = []
    name = doc["metadata"]["name"]
    if doc["kind"] == "RayService" and (len(name) > 47 or not DNS_1035.match(name)):
        errors.append(f"RayService name {name!r} must be a DNS-1035 label of at most 47 chars")
    spec = _cluster_spec(doc)
    templates = [spec["headGroupSpec"]["template"]] + [
        g["template"] for g in spec.get("workerGroupSpecs", [])]
    for template in templates:
        if not template.get("spec", {}).get("containers"):
            errors.append("every pod template needs at least one container")
    for group in spec.get("workerGroupSpecs", []):
        lo, hi = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        n = group.get("replicas", lo)
        if not lo <= n <= hi:
            errors.append(f"group {group['groupName']}: minReplicas <= replicas <= maxReplicas "
                          f"fails ({lo}, {n}, {hi})")
    return errors


def validate(doc: dict) -> list[str]:
    """All problems with one RayService or RayCluster document; [] when it would be accepted."""
    doc = copy.deepcopy(doc)
    _drop_null_template_metadata(doc)
    s = schema(doc["kind"])
    _apply_defaults(s, doc)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(s).iter_errors(doc)]
    return errors + (operator_errors(doc) if not errors else [])
