"""fal's inputs and app ids, translated to native requests (`api.dialects.fal`)."""

from __future__ import annotations

import pytest

from serve_app.api.dialects import native_request
from serve_app.api.dialects.fal import FAL_APPS, FalInput, native_model
from serve_app.core.errors import InvalidRequestError, UnknownModelError
from serve_app.registry.catalog import CATALOG, find_entry


def native(webhook=None, **inputs):
    return native_request(FalInput, {"prompt": "p", **inputs}).to_native("m", webhook)


def test_fields_become_native_ones():
    got = native(image_size="landscape_16_9", num_images=3, seed=1, guidance_scale=2.5,
                 loras=[{"path": "o/n", "scale": 0.4}], acceleration="regular")
    assert got == {"model": "m", "prompt": "p", "response_format": "url",
                   "output_format": "jpeg", "image_size": "landscape_16_9", "n": 3,
                   "seed": 1, "guidance_scale": 2.5, "loras": [{"path": "o/n", "scale": 0.4}]}
    assert native(image_size={"width": 320, "height": 240})["image_size"] == {
        "width": 320, "height": 240}
    assert native(webhook="https://h/x")["webhook_events_filter"] == ["completed"]
    edit = native(image_url="data:image/png;base64,AA", mask_url="https://x/m.png",
                  strength=0.2)
    assert (edit["image"], edit["mask_image"], edit["strength"]) == (
        "data:image/png;base64,AA", "https://x/m.png", 0.2)
    with pytest.raises(InvalidRequestError):
        native(mask_url="https://x/m.png")
    with pytest.raises(InvalidRequestError) as info:
        native(sharpness=1)
    assert info.value.param == "sharpness"


def test_app_ids():
    assert native_model("fal-ai/flux/schnell", "a") == "black-forest-labs/FLUX.1-schnell"
    assert native_model("a/tm_x_1", "a") == "tm_x_1"
    assert native_model("tessera/tiny-flux", "a") == "tessera/tiny-flux"
    for app in ("a/not-a-model", "tessera/tiny-flux/extra", "solo", "fal-ai/no/such"):
        with pytest.raises(UnknownModelError):
            native_model(app, "a")
    for app, catalog_id in FAL_APPS.items():
        assert find_entry(catalog_id) is CATALOG[catalog_id], app
