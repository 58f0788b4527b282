"""The family registry and the catalog: pipeline classes, licences, prices."""

from __future__ import annotations

import pytest

from deployments.registry import FAMILIES, family_for_pipeline
from serve_app.catalog import CATALOG, price_per_image, requires_acceptance
from serve_app.core.config import PricingSettings
from serve_app.validation import license_from_model_card

# ---------------------------------------------------------------- registry and catalog


def test_registry_maps_pipeline_classes_to_families():
    assert family_for_pipeline("FluxPipeline").name == "flux"
    assert family_for_pipeline("FluxImg2ImgPipeline").name == "flux"
    assert family_for_pipeline("NoSuchPipeline") is None
    for name, spec in FAMILIES.items():
        assert spec.name == name and spec.tasks
        assert f"tessera/tiny-{name}" in CATALOG


def test_licences_and_prices():
    assert not requires_acceptance("apache-2.0") and not requires_acceptance("MIT")
    assert requires_acceptance("flux-1-dev-non-commercial-license")
    assert requires_acceptance(None)
    pricing = PricingSettings(per_model={"black-forest-labs/FLUX.1-dev": 0.1},
                              per_family={"flux": 0.02}, default_per_image=0.5)
    assert price_per_image("black-forest-labs/FLUX.1-dev", "flux", pricing) == 0.1
    assert price_per_image("black-forest-labs/FLUX.1-schnell", "flux", pricing) == 0.0054
    assert price_per_image("someone/flux-finetune", "flux", pricing) == 0.02
    assert price_per_image("tessera/tiny-flux", "flux", PricingSettings()) == 0.01


@pytest.mark.parametrize("card, licence", [
    ("---\nlicense: mit\n---\n", "mit"),
    ("---\nlicense: other\nlicense_name: my-licence\n---\nbody", "my-licence"),
    ("---\nlicense: [apache-2.0]\n---\n", "apache-2.0"),
    ("# no front matter\nlicense: mit", None),
    ("---\n: : broken yaml [\n---\n", None),
])
def test_licence_from_model_card(card, licence):
    assert license_from_model_card(card) == licence
