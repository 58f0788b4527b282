"""Parametrising tests over model families."""

from __future__ import annotations

import pytest

# Families whose real processor classes need torchvision, which has no CPU build here.
NEEDS_TORCHVISION = {"qwen-image-edit", "longcat-edit"}


def torchvision_missing() -> bool:
    from transformers.utils import is_torchvision_available

    return not is_torchvision_available()


def family_param(name):
    marks = []
    if name in NEEDS_TORCHVISION:
        marks.append(pytest.mark.skipif(torchvision_missing(),
                                        reason="its Qwen2VLProcessor needs torchvision"))
    return pytest.param(name, marks=marks, id=name)
