"""The built-in model catalog: what Tessera knows about well-known checkpoints.

Entries are data. A checkpoint outside the catalog still imports when its `model_index.json`
names a registered pipeline class; the catalog only adds licence, price and tuned defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployments.base import ParameterSpec
from deployments.registry import FAMILIES

TINY_PREFIX = "tessera/tiny-"

# Licences that allow commercial use without a separate agreement.
PERMISSIVE_LICENSES = {
    "apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "openrail", "openrail++",
    "creativeml-openrail-m", "cc-by-4.0", "cc0-1.0",
}


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    family: str
    license: str
    price_per_image: float | None = None
    parameters: ParameterSpec | None = None
    pipeline_class: str | None = None
    description: str = ""

    @property
    def builtin_tiny(self) -> bool:
        return self.id.startswith(TINY_PREFIX)


def requires_acceptance(license_id: str | None) -> bool:
    return (license_id or "unknown").lower() not in PERMISSIVE_LICENSES


_FLUX = FAMILIES["flux"].parameters

CATALOG: dict[str, CatalogEntry] = {e.id: e for e in [
    CatalogEntry(
        "black-forest-labs/FLUX.1-schnell", "flux", "apache-2.0", 0.0054,
        _FLUX.model_copy(update={"num_inference_steps": 4, "max_steps": 12,
                                 "guidance_scale": None}),
        "FluxPipeline", "FLUX.1 [schnell], 1-4 step distilled"),
    CatalogEntry(
        "black-forest-labs/FLUX.1-dev", "flux", "flux-1-dev-non-commercial-license", 0.045,
        _FLUX, "FluxPipeline", "FLUX.1 [dev], guidance-distilled"),
    CatalogEntry(
        "black-forest-labs/FLUX.1-Krea-dev", "flux", "flux-1-dev-non-commercial-license",
        0.045, _FLUX.model_copy(update={"guidance_scale": 4.5}), "FluxPipeline",
        "FLUX.1 Krea [dev]"),
]}

# Every family with a tiny builder gets a `tessera/tiny-<family>` entry.
for _spec in FAMILIES.values():
    if _spec.build_tiny is not None:
        _entry = CatalogEntry(
            f"{TINY_PREFIX}{_spec.name}", _spec.name, "apache-2.0", None,
            _spec.tiny_parameters or _spec.parameters,
            next(iter(_spec.pipelines.values())),
            f"tiny random-weight {_spec.display_name} checkpoint for tests and demos")
        CATALOG[_entry.id] = _entry


def price_per_image(model_id: str, family: str, pricing) -> float:
    """Config overrides first, then the catalog's price, then the family's, then the default."""
    if model_id in pricing.per_model:
        return pricing.per_model[model_id]
    entry = CATALOG.get(model_id)
    if entry is not None and entry.price_per_image is not None:
        return entry.price_per_image
    return pricing.per_family.get(family, pricing.default_per_image)
