"""Helper models: what conditions or prepares a family's generation without being a pipeline of
its own: ControlNets, FLUX's Redux prior, SDXL's IP-Adapter, the depth estimator of
`preprocess: depth`.

Each has a tiny random-weight build of its real class, `tessera/tiny-<name>`, written on first
use next to the tiny checkpoints (as the tiny pipelines are) and built on the tiny checkpoint of
its family, so every path runs with no download. `helper_path` says where any helper loads
from: a tiny build, a directory under the models directory, or a Hugging Face repo id (loaded by
`from_pretrained` from the cache, or the Hub).

Everything here is blocking; torch, diffusers and transformers are imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from deployments import tiny
from serve_app.core.types import TINY_PREFIX

HelperKind = Literal["controlnet", "reference", "depth"]


@dataclass(frozen=True)
class TinyHelper:
    kind: HelperKind
    family: str | None  # the family it serves (None: any)
    build: Callable[[Path, str], None]  # (out dir, data dir)


def _base(data_dir: str, family: str):
    """The family's tiny pipeline, loaded: the helper is built to fit it."""
    from diffusers import DiffusionPipeline

    from deployments.loading import ensure_tiny_checkpoint
    from deployments.registry import FAMILIES

    return DiffusionPipeline.from_pretrained(
        str(ensure_tiny_checkpoint(data_dir, FAMILIES[family])))


def _noisy(module, std: float = 0.05) -> None:
    """ControlNets start with zero convolutions (they add nothing until trained): random ones,
    so a tiny ControlNet visibly conditions the image."""
    import torch

    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            if not p.abs().sum():
                p.normal_(0, std)


def _controlnet_like(cls_name: str, family: str) -> Callable[[Path, str], None]:
    """A one-layer ControlNet with the dimensions of the family's tiny transformer."""
    def build(out: Path, data_dir: str) -> None:
        import inspect

        import diffusers
        import torch

        cls = getattr(diffusers, cls_name)
        transformer = _base(data_dir, family).transformer
        accepted = inspect.signature(cls.__init__).parameters
        config = {k: v for k, v in transformer.config.items()
                  if k in accepted and not k.startswith("_")}
        torch.manual_seed(0)
        model = cls(**{**config, "num_layers": 1, **(
            {"num_single_layers": 1} if "num_single_layers" in accepted else {})})
        _noisy(model)
        model.save_pretrained(str(out), safe_serialization=True)
    return build


def build_sdxl_controlnet(out: Path, data_dir: str) -> None:
    """A ControlNet made from the tiny SDXL UNet, as ControlNets are; its conditioning embedding
    downsamples as the VAE does (three times)."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    model = ControlNetModel.from_unet(_base(data_dir, "sdxl").unet,
                                      conditioning_embedding_out_channels=(4, 8, 16, 16))
    _noisy(model)
    model.save_pretrained(str(out), safe_serialization=True)


def build_flux_redux(out: Path, data_dir: str) -> None:
    """A FLUX.1 Redux prior (its image encoder and embedder, as Black Forest Labs ship it: the
    text encoders are the base's) whose image tokens have the tiny FLUX's width."""
    import torch
    from diffusers import FluxPriorReduxPipeline, ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    width = _base(data_dir, "flux").transformer.config.joint_attention_dim
    torch.manual_seed(0)
    encoder = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8))
    FluxPriorReduxPipeline(
        image_encoder=encoder, image_embedder=ReduxImageEncoder(redux_dim=16,
                                                                txt_in_features=width),
        feature_extractor=SiglipImageProcessor(size={"height": 32, "width": 32}),
    ).save_pretrained(str(out), safe_serialization=True)


IP_ADAPTER_WEIGHTS = "ip-adapter.safetensors"


def build_sdxl_ip_adapter(out: Path, data_dir: str) -> None:
    """An IP-Adapter laid out as h94/IP-Adapter's SDXL one: `ip-adapter.safetensors` (image
    projection and one key/value projection pair per cross-attention layer of the tiny SDXL
    UNet) and `image_encoder/` (a CLIP vision model)."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    unet = _base(data_dir, "sdxl").unet
    cross, width = unet.config.cross_attention_dim, 16
    torch.manual_seed(0)
    state, key = {}, 1
    for name in unet.attn_processors:  # numbered as diffusers' loader reads them
        if name.endswith("attn1.processor"):
            continue
        channels = unet.config.block_out_channels
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        for proj in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{key}.{proj}.weight"] = torch.randn(hidden, cross) * 0.3
        key += 2
    state.update({"image_proj.proj.weight": torch.randn(cross * 4, width) * 0.3,
                  "image_proj.proj.bias": torch.zeros(cross * 4),
                  "image_proj.norm.weight": torch.ones(cross),
                  "image_proj.norm.bias": torch.zeros(cross)})
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / IP_ADAPTER_WEIGHTS))
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=width)).save_pretrained(
        str(out / "image_encoder"), safe_serialization=True)


def build_depth(out: Path, data_dir: str) -> None:
    """A DPT depth estimator (transformers' `depth-estimation` task), four small layers."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    DPTForDepthEstimation(DPTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=16, neck_hidden_sizes=[4, 4, 4, 4], fusion_hidden_size=8,
        backbone_out_indices=[0, 1, 2, 3], reassemble_factors=[4, 2, 1, 0.5],
    )).save_pretrained(str(out), safe_serialization=True)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(
        str(out))


TINY_HELPERS: dict[str, TinyHelper] = {
    f"{TINY_PREFIX}flux-controlnet": TinyHelper(
        "controlnet", "flux", _controlnet_like("FluxControlNetModel", "flux")),
    f"{TINY_PREFIX}sdxl-controlnet": TinyHelper("controlnet", "sdxl", build_sdxl_controlnet),
    f"{TINY_PREFIX}sd3-controlnet": TinyHelper(
        "controlnet", "sd3", _controlnet_like("SD3ControlNetModel", "sd3")),
    f"{TINY_PREFIX}qwen-image-controlnet": TinyHelper(
        "controlnet", "qwen-image", _controlnet_like("QwenImageControlNetModel", "qwen-image")),
    f"{TINY_PREFIX}flux-redux": TinyHelper("reference", "flux", build_flux_redux),
    f"{TINY_PREFIX}sdxl-ip-adapter": TinyHelper("reference", "sdxl", build_sdxl_ip_adapter),
    f"{TINY_PREFIX}depth": TinyHelper("depth", None, build_depth),
}
# what a tiny family's requests use where a real family's config names its own
TINY_REFERENCE = {"flux": f"{TINY_PREFIX}flux-redux", "sdxl": f"{TINY_PREFIX}sdxl-ip-adapter"}
TINY_DEPTH = f"{TINY_PREFIX}depth"


def depth_model_for(configured: str | None, tiny: bool) -> str | None:
    """The depth model of `preprocess: depth`: the configured one, else the tiny one for the
    tiny models (None: depth cannot be asked)."""
    return configured or (TINY_DEPTH if tiny else None)


def reference_model_for(family: str, configured: str | None, tiny: bool) -> str | None:
    """What makes a family's reference images into conditioning: a tiny model's is its tiny
    helper (the real ones do not fit it), a real model's is its family's configured one."""
    return TINY_REFERENCE.get(family) if tiny else configured


COMPLETE = ".complete"  # a helper directory's last file: it was written whole


def ensure_helper(data_dir: str | Path, name: str) -> Path:
    """A tiny helper's directory, built once (`tiny.write_once`)."""
    def build(tmp: Path) -> None:
        TINY_HELPERS[name].build(tmp, str(data_dir))
        (tmp / COMPLETE).touch()

    return tiny.write_once(tiny.checkpoint_path(data_dir, name[len(TINY_PREFIX):]), COMPLETE,
                           build)


def helper_path(name: str, data_dir: str | Path, models_dir: Path) -> str:
    """Where a helper loads from: its tiny build, a directory under the models directory (as
    the ingress resolved it), or the Hub id itself (`from_pretrained` reads the cache)."""
    if name in TINY_HELPERS:
        return str(ensure_helper(data_dir, name))
    if name.startswith("/"):
        path = Path(name)
        if not path.resolve().is_relative_to(models_dir.resolve()):
            raise ValueError(f"{name} is not under the models directory")
    return name
