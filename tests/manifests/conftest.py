"""Manifests tier: the generated KubeRay manifests, read once per module."""

from __future__ import annotations

import pytest

from tests.support.crd import CLUSTER, docs


@pytest.fixture(scope="module")
def manifest() -> list[dict]:
    return docs((CLUSTER / "ray-service.yaml").read_text())


@pytest.fixture(scope="module")
def ray_service(manifest) -> dict:
    return next(d for d in manifest if d["kind"] == "RayService")


