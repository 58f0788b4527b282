"""Helper models (`deployments.helpers`): which depth model and reference model a task gets,
where a helper loads from, and the tiny helpers built of the real classes."""

from __future__ import annotations

import json

import pytest

from deployments.helpers import (
    TINY_DEPTH,
    TINY_HELPERS,
    TINY_REFERENCE,
    depth_model_for,
    ensure_helper,
    helper_path,
    reference_model_for,
)
from deployments.registry import FAMILIES, family_for_controlnet


def test_tiny_models_use_tiny_helpers_and_real_ones_their_config():
    assert depth_model_for(None, tiny=True) == TINY_DEPTH
    assert depth_model_for(None, tiny=False) is None
    assert depth_model_for("depth-anything/Depth-Anything-V2-Small-hf", tiny=True) == (
        "depth-anything/Depth-Anything-V2-Small-hf")
    assert reference_model_for("flux", None, tiny=True) == TINY_REFERENCE["flux"]
    # a real Redux prior does not fit a tiny FLUX: the tiny model keeps its tiny one
    assert reference_model_for("flux", "black-forest-labs/FLUX.1-Redux-dev", tiny=True) == (
        TINY_REFERENCE["flux"])
    assert reference_model_for("flux", "black-forest-labs/FLUX.1-Redux-dev", tiny=False) == (
        "black-forest-labs/FLUX.1-Redux-dev")
    assert reference_model_for("sdxl", None, tiny=False) is None


def test_helper_paths_stay_under_the_models_directory(tmp_path):
    models = tmp_path / "models"
    (models / "cn").mkdir(parents=True)
    assert helper_path(str(models / "cn"), tmp_path, models) == str(models / "cn")
    with pytest.raises(ValueError):
        helper_path(str(models / ".." / "elsewhere"), tmp_path, models)
    assert helper_path("owner/repo", tmp_path, models) == "owner/repo"  # the Hub's


def test_every_tiny_helper_serves_a_family_that_has_its_kind():
    for name, helper in TINY_HELPERS.items():
        if helper.kind == "controlnet":
            assert FAMILIES[helper.family].controlnet is not None, name
        if helper.kind == "reference":
            assert FAMILIES[helper.family].reference is not None, name
    assert set(TINY_REFERENCE) == {n for n, s in FAMILIES.items() if s.reference}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, h in TINY_HELPERS.items()
                                        if h.kind == "controlnet"))
def test_tiny_controlnets_are_their_familys_class(tmp_path, name):
    path = ensure_helper(tmp_path, name)
    assert ensure_helper(tmp_path, name) == path  # built once
    config = json.loads((path / "config.json").read_text())
    spec = family_for_controlnet(config)
    assert spec.name == TINY_HELPERS[name].family
    assert any(p.suffix == ".safetensors" for p in path.iterdir())
    # the widths a ControlNet must share with its model are in both configs, and agree
    from deployments.loading import ensure_tiny_checkpoint

    root = ensure_tiny_checkpoint(tmp_path, spec)
    denoiser = json.loads(next((root / d / "config.json").read_text()
                               for d in ("transformer", "unet") if (root / d).is_dir()))
    keys = spec.controlnet.fit_keys
    assert keys and all(k in config and k in denoiser for k in keys)
    assert {k: config[k] for k in keys} == {k: denoiser[k] for k in keys}


def test_the_tiny_depth_model_runs_transformers_depth_estimation(tmp_path):
    from PIL import Image
    from transformers import pipeline

    estimator = pipeline("depth-estimation", model=str(ensure_helper(tmp_path, TINY_DEPTH)))
    depth = estimator(Image.new("RGB", (120, 80), (10, 200, 30)))["depth"]
    assert depth.size == (120, 80) and depth.mode == "L"
