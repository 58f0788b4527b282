"""Sizes, masks, edit routing and durations."""

from __future__ import annotations

import pytest

from serve_app.core.errors import InvalidRequestError
from serve_app.core.rules import parse_duration


def test_mask_resize_stays_binary_and_routing():
    from PIL import Image

    from serve_app.core.errors import UnsupportedTaskError
    from serve_app.core.rules import route_edit

    mask = Image.new("L", (40, 32), 0)
    mask.paste(255, (10, 8, 30, 24))
    resized = mask.resize((80, 64), resample=0)  # as the ingress does
    assert set(resized.getdata()) == {0, 255}
    assert resized.getpixel((40, 32)) == 255 and resized.getpixel((2, 2)) == 0
    assert route_edit(["text-to-image", "image-to-image", "inpaint"], True, "m") == "inpaint"
    assert route_edit(["text-to-image", "image-to-image"], False, "m") == "image-to-image"
    assert route_edit(["text-to-image", "edit"], False, "m") == "edit"
    with pytest.raises(UnsupportedTaskError):
        route_edit(["text-to-image"], False, "m")
    with pytest.raises(InvalidRequestError):
        route_edit(["inpaint"], False, "m")


@pytest.mark.parametrize("value, seconds", [
    (90, 90.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1.5h", 5400.0),
    ("500ms", 0.5), (" 2 s ", 2.0)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "", "5d", "-1", 0, -3, "0s", True, 86401, "25h"])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)
