"""Families register themselves here; the rest of Tessera looks them up, never branches on them."""

from __future__ import annotations

import importlib

from deployments.base import FamilySpec

FAMILIES: dict[str, FamilySpec] = {}
DEPLOYMENTS: dict[str, type] = {}
_BY_PIPELINE_CLASS: dict[str, str] = {}

# One module per family; importing it registers the family.
BUILTIN_FAMILY_MODULES = [
    "deployments.flux",
    "deployments.flux_fill",
    "deployments.flux_kontext",
    "deployments.sd3",
    "deployments.sdxl",
    "deployments.pixart",
    "deployments.qwen_image",
    "deployments.qwen_image_edit",
    "deployments.z_image",
    "deployments.hunyuan_image",
    "deployments.flux2",
    "deployments.longcat",
]


def register(spec: FamilySpec, deployment) -> None:
    FAMILIES[spec.name] = spec
    DEPLOYMENTS[spec.name] = deployment
    for cls in spec.pipeline_classes:
        owner = _BY_PIPELINE_CLASS.setdefault(cls, spec.name)
        if owner != spec.name:
            raise ValueError(f"pipeline class {cls} registered by {owner} and {spec.name}")


def family_for_pipeline(class_name: str) -> FamilySpec | None:
    name = _BY_PIPELINE_CLASS.get(class_name)
    return FAMILIES[name] if name else None


for _module in BUILTIN_FAMILY_MODULES:
    importlib.import_module(_module)
