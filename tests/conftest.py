"""Shared by every tier: GPU tests are skipped where CUDA is absent."""

from __future__ import annotations

import os

import pytest

# Read by Ray at import time: keeps multi-node test clusters on 127.0.0.1 (the cluster tests).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# No test asks the Hugging Face Hub: validation and adapter lookups stay in the local cache
# (a test of an unreachable Hub unsets this and points the endpoint at a closed loopback port).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
