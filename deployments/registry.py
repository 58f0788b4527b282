"""Every model family, by name and by pipeline class: a static mapping of the families' data.

The rest of Tessera looks families up here and never branches on one.
"""

from __future__ import annotations

from deployments.families import (
    flux,
    flux2,
    flux_fill,
    flux_kontext,
    hunyuan_image,
    longcat,
    pixart,
    qwen_image,
    qwen_image_edit,
    sd3,
    sd_upscaler,
    sdxl,
    swin2sr,
    z_image,
)
from serve_app.core.config import TesseraConfig, default_family_settings
from serve_app.core.types import FamilySpec

FAMILIES: dict[str, FamilySpec] = {m.SPEC.name: m.SPEC for m in (
    flux, flux_fill, flux_kontext, sd3, sdxl, pixart, qwen_image, qwen_image_edit, z_image,
    hunyuan_image, flux2, longcat, swin2sr, sd_upscaler)}


def _by_pipeline_class() -> dict[str, str]:
    owners: dict[str, str] = {}
    for spec in FAMILIES.values():
        for cls in spec.pipeline_classes:
            owner = owners.setdefault(cls, spec.name)
            if owner != spec.name:
                raise ValueError(f"pipeline class {cls} belongs to {owner} and {spec.name}")
    return owners


_BY_PIPELINE_CLASS = _by_pipeline_class()


def takes_loras(family: str) -> bool:
    """Whether requests for the family's models may name LoRA adapters."""
    spec = FAMILIES.get(family)
    return spec is not None and spec.takes_loras


def family_for_controlnet(config: dict) -> FamilySpec | None:
    """The family a ControlNet serves, from its config.json (its `_class_name`, and the values
    that tell a shared class's bases apart); None: no family here runs it."""
    for spec in FAMILIES.values():
        control = spec.controlnet
        if control is not None and config.get("_class_name") in control.model_classes and all(
                config.get(k) == v for k, v in control.config_requires):
            return spec
    return None


def family_for_pipeline(class_name: str) -> FamilySpec | None:
    name = _BY_PIPELINE_CLASS.get(class_name)
    return FAMILIES[name] if name else None


def resolve_families(config: TesseraConfig) -> TesseraConfig:
    """The config with its families checked and filled: an unknown name is an error; omitted
    families come with their defaults (warm or scaled to zero, per their spec)."""
    if config.families is None:
        families = {name: default_family_settings(spec.warm_by_default)
                    for name, spec in FAMILIES.items()}
    else:
        unknown = sorted(set(config.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
        families = config.families
    return config.model_copy(update={"families": families})
