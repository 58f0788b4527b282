"""The catalog: licences that need acceptance, prices, catalog models as records."""

from __future__ import annotations

from serve_app.core.config import PricingSettings
from serve_app.registry.catalog import CATALOG, price_per_image, requires_acceptance


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


def test_a_catalog_model_is_a_record_with_its_terms():
    from serve_app.core.config import TesseraConfig
    from serve_app.core.types import ModelSource
    from serve_app.registry.catalog import catalog_record

    config = TesseraConfig(catalog={"accepted_licenses": ["flux-1-dev-non-commercial-license"]})
    srpo = catalog_record(CATALOG["tencent/SRPO"], config)
    assert srpo.source == ModelSource(base="black-forest-labs/FLUX.1-dev",
                                      transformer="tencent/SRPO")
    assert srpo.tenant == "tessera" and srpo.price_per_image == 0.045
    assert not srpo.requires_license_acceptance  # the operator accepted it for everyone
    schnell = catalog_record(CATALOG["black-forest-labs/FLUX.1-schnell"], TesseraConfig())
    assert schnell.source == ModelSource(base="black-forest-labs/FLUX.1-schnell")
    assert schnell.parameters.num_inference_steps == 4
    dev = catalog_record(CATALOG["black-forest-labs/FLUX.1-dev"], TesseraConfig())
    assert dev.requires_license_acceptance
