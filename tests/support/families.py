"""Parametrising tests over model families."""

from __future__ import annotations

import pytest

from deployments.registry import FAMILIES

# Families whose real processor classes need torchvision, which has no CPU build here.
NEEDS_TORCHVISION = {name for name, spec in FAMILIES.items() if "torchvision" in spec.needs_modules}


def torchvision_missing() -> bool:
    from transformers.utils import is_torchvision_available

    return not is_torchvision_available()


def family_param(name):
    marks = []
    if name in NEEDS_TORCHVISION:
        marks.append(pytest.mark.skipif(torchvision_missing(),
                                        reason="its Qwen2VLProcessor needs torchvision"))
    return pytest.param(name, marks=marks, id=name)
