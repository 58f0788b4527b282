"""Where a named ControlNet is and which family it serves (`registry.controlnets`): the tiny
ones without building anything, Hub repositories by their cached config.json, and clear
refusals for everything else."""

from __future__ import annotations

import json

import pytest

from serve_app.core.errors import ControlNetUnreachableError
from serve_app.core.types import ModelSource
from serve_app.registry.controlnets import (
    CONTROLNETS,
    is_controlnet_dir,
    locate_controlnet,
    misfit,
)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, the Hub offline; `add(repo, config)` caches a repo."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def add(repo: str, config: dict) -> None:
        root = cache / f"models--{repo.replace('/', '--')}"
        snapshot = root / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text(json.dumps(config))
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text("0" * 40)

    return add


def test_tiny_controlnets_are_known_without_building(tmp_path):
    found = locate_controlnet("tessera/tiny-sdxl-controlnet", tmp_path, "p")
    assert found.family == "sdxl" and found.tiny and found.source.base == (
        "tessera/tiny-sdxl-controlnet")
    assert not list(tmp_path.iterdir())  # nothing was written
    assert {e.family for e in CONTROLNETS.values()} == {"flux", "sdxl", "sd3", "qwen-image"}


def test_hub_controlnets_by_their_cached_config(tmp_path, hub_cache):
    hub_cache("someone/flux-cn", {"_class_name": "FluxControlNetModel"})
    hub_cache("someone/sd15-cn", {"_class_name": "ControlNetModel"})
    hub_cache("someone/unet", {"_class_name": "UNet2DConditionModel"})
    found = locate_controlnet("someone/flux-cn", tmp_path, "controlnets[0].path")
    assert found.family == "flux" and found.hub and not found.tiny
    for repo, says in [("someone/sd15-cn", "not a ControlNet Tessera runs"),
                       ("someone/unet", "not a ControlNet Tessera runs"),
                       ("someone/not-cached", "HF_HUB_OFFLINE"),
                       ("../../etc", "not a ControlNet this server can reach"),
                       ("/etc/passwd", "not a ControlNet this server can reach")]:
        with pytest.raises(ControlNetUnreachableError) as raised:
            locate_controlnet(repo, tmp_path, "controlnets[0].path")
        assert says in raised.value.message and raised.value.param == "controlnets[0].path"


def test_directories_only_for_validation(tmp_path):
    models = tmp_path / "models"
    cn = models / "cn"
    cn.mkdir(parents=True)
    (cn / "config.json").write_text(json.dumps({"_class_name": "SD3ControlNetModel"}))
    assert is_controlnet_dir(cn)
    assert locate_controlnet(str(cn), models, "p", local=True).family == "sd3"
    with pytest.raises(ControlNetUnreachableError):  # a request never names a directory
        locate_controlnet(str(cn), models, "p")
    (cn / "model_index.json").write_text("{}")
    assert not is_controlnet_dir(cn)  # a pipeline, not a ControlNet


def test_widths_that_differ_from_the_models_are_named(tmp_path):
    models = tmp_path / "models"
    model, cn = models / "flux", models / "cn"
    (model / "transformer").mkdir(parents=True)
    (model / "model_index.json").write_text("{}")
    (model / "transformer" / "config.json").write_text(json.dumps(
        {"joint_attention_dim": 32, "num_attention_heads": 2}))
    cn.mkdir()
    config = {"_class_name": "FluxControlNetModel", "joint_attention_dim": 4096,
              "num_attention_heads": 2}
    (cn / "config.json").write_text(json.dumps(config))
    found = locate_controlnet(str(cn), models, "p", local=True)
    keys = ("joint_attention_dim", "num_attention_heads")
    source = ModelSource(base=str(model))
    assert misfit(found, source, str(tmp_path), models, keys) == [
        "joint_attention_dim 4096 (the model's: 32)"]
    (cn / "config.json").write_text(json.dumps({**config, "joint_attention_dim": 32}))
    fitting = locate_controlnet(str(cn), models, "p", local=True)
    assert misfit(fitting, source, str(tmp_path), models, keys) == []
    # a model whose checkpoint is not on this machine: nothing to compare, the replica checks
    assert misfit(found, ModelSource(base="someone/elsewhere"), str(tmp_path), models,
                  keys) == []
