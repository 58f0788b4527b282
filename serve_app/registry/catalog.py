"""The built-in model catalog: what Tessera knows about well-known checkpoints.

Entries are data. A checkpoint outside the catalog still imports when its `model_index.json`
names a registered pipeline class; the catalog only adds licence, price and tuned defaults.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from deployments.registry import FAMILIES
from serve_app.core.models import ModelRecord
from serve_app.core.types import TINY_PREFIX, ModelSource, ParameterSpec

# Licences that allow commercial use without a separate agreement.
PERMISSIVE_LICENSES = {
    "apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "openrail", "openrail++",
    "creativeml-openrail-m", "cc-by-4.0", "cc0-1.0",
}


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    family: str
    license: str | None  # None: read from the model card at validation
    price_per_image: float | None = None
    parameters: ParameterSpec | None = None
    pipeline_class: str | None = None
    description: str = ""
    # set for ids that are known but cannot be served: validation says exactly why
    unsupported_reason: str | None = None
    # a transformer fine-tune loaded onto another checkpoint's pipeline
    base_model: str | None = None

    @property
    def builtin_tiny(self) -> bool:
        return self.id.startswith(TINY_PREFIX)

    @property
    def short_name(self) -> str:
        return self.id.rsplit("/", 1)[-1]

    @property
    def source(self) -> ModelSource:
        """What the family server loads for it: a fine-tune's transformer over its base."""
        if self.base_model:
            return ModelSource(base=self.base_model, transformer=self.id)
        return ModelSource(base=self.id)


def requires_acceptance(license_id: str | None) -> bool:
    return (license_id or "unknown").lower() not in PERMISSIVE_LICENSES


_FLUX = FAMILIES["flux"].parameters
NC_FLUX1 = "flux-1-dev-non-commercial-license"


def _params(family: str, **update) -> ParameterSpec:
    return FAMILIES[family].parameters.model_copy(update=update)


CATALOG: dict[str, CatalogEntry] = {e.id: e for e in [
    CatalogEntry(
        "black-forest-labs/FLUX.1-schnell", "flux", "apache-2.0", 0.0054,
        _FLUX.model_copy(update={"num_inference_steps": 4, "max_steps": 12,
                                 "guidance_scale": None}),
        "FluxPipeline", "FLUX.1 [schnell], 1-4 step distilled"),
    CatalogEntry(
        "black-forest-labs/FLUX.1-dev", "flux", "flux-1-dev-non-commercial-license", 0.045,
        _FLUX, "FluxPipeline", "FLUX.1 [dev], guidance-distilled"),
    CatalogEntry(
        "black-forest-labs/FLUX.1-Krea-dev", "flux", "flux-1-dev-non-commercial-license",
        0.045, _FLUX.model_copy(update={"guidance_scale": 4.5}), "FluxPipeline",
        "FLUX.1 Krea [dev]"),
    CatalogEntry(
        "tencent/SRPO", "flux", NC_FLUX1, 0.045, _FLUX, "FluxPipeline",
        "SRPO: a FLUX.1-dev transformer fine-tune, run on the FLUX.1-dev pipeline",
        base_model="black-forest-labs/FLUX.1-dev"),
    CatalogEntry("black-forest-labs/FLUX.1-Fill-dev", "flux-fill", NC_FLUX1, 0.045,
                 None, "FluxFillPipeline", "FLUX.1 Fill [dev], mask inpainting"),
    CatalogEntry("black-forest-labs/FLUX.1-Kontext-dev", "flux-kontext", NC_FLUX1, 0.045,
                 None, "FluxKontextPipeline", "FLUX.1 Kontext [dev], instruction edits"),
    CatalogEntry("black-forest-labs/FLUX.2-dev", "flux2", "flux-dev-non-commercial-license",
                 0.045, None, "Flux2Pipeline",
                 "FLUX.2 [dev], generation and multi-reference edits"),
    CatalogEntry("stabilityai/stable-diffusion-3.5-large", "sd3",
                 "stabilityai-ai-community", 0.045, None, "StableDiffusion3Pipeline",
                 "Stable Diffusion 3.5 Large"),
    CatalogEntry("stabilityai/stable-diffusion-3.5-medium", "sd3",
                 "stabilityai-ai-community", 0.045, _params("sd3", num_inference_steps=40,
                                                            guidance_scale=4.5),
                 "StableDiffusion3Pipeline", "Stable Diffusion 3.5 Medium"),
    CatalogEntry("stabilityai/stable-diffusion-xl-base-1.0", "sdxl", "openrail++", 0.009,
                 None, "StableDiffusionXLPipeline", "SDXL base 1.0"),
    CatalogEntry("PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", "pixart-sigma", "openrail++",
                 0.009, None, "PixArtSigmaPipeline", "PixArt-Sigma XL 1024"),
    CatalogEntry("Qwen/Qwen-Image", "qwen-image", "apache-2.0", 0.0324, None,
                 "QwenImagePipeline", "Qwen-Image"),
    CatalogEntry("Qwen/Qwen-Image-2512", "qwen-image", "apache-2.0", 0.0324, None,
                 "QwenImagePipeline", "Qwen-Image 2512"),
    CatalogEntry("Qwen/Qwen-Image-Edit", "qwen-image-edit", "apache-2.0", 0.0324, None,
                 "QwenImageEditPipeline", "Qwen-Image-Edit, instruction edits"),
    CatalogEntry("meituan-longcat/LongCat-Image-Edit", "longcat-edit", None, 0.0324, None,
                 "LongCatImageEditPipeline", "LongCat-Image-Edit, instruction edits"),
    CatalogEntry("Tongyi-MAI/Z-Image-Turbo", "z-image", "apache-2.0", 0.0054, None,
                 "ZImagePipeline", "Z-Image Turbo, 8-step distilled"),
    CatalogEntry("hunyuanvideo-community/HunyuanImage-2.1-Diffusers", "hunyuan-image",
                 "tencent-hunyuan-community", 0.045, None, "HunyuanImagePipeline",
                 "HunyuanImage-2.1 in diffusers format"),
    CatalogEntry("caidas/swin2SR-classical-sr-x2-64", "swin2sr", "apache-2.0", 0.002,
                 _params("swin2sr", upscale_factor=2), "Swin2SRForImageSuperResolution",
                 "Swin2SR x2, classical super-resolution"),
    CatalogEntry("caidas/swin2SR-classical-sr-x4-64", "swin2sr", "apache-2.0", 0.002,
                 _params("swin2sr", upscale_factor=4), "Swin2SRForImageSuperResolution",
                 "Swin2SR x4, classical super-resolution"),
    CatalogEntry("caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr", "swin2sr", "apache-2.0",
                 0.002, _params("swin2sr", upscale_factor=4), "Swin2SRForImageSuperResolution",
                 "Swin2SR x4 for real-world photos (noise, JPEG artefacts)"),
    CatalogEntry("stabilityai/stable-diffusion-x4-upscaler", "sd-upscaler", "openrail++",
                 0.01, None, "StableDiffusionUpscalePipeline",
                 "Stable Diffusion x4 upscaler, prompt-guided"),
    CatalogEntry(
        "tencent/HunyuanImage-3.0", "hunyuan-image", "tencent-hunyuan-community",
        description="HunyuanImage-3.0",
        unsupported_reason=(
            "tencent/HunyuanImage-3.0 is not a diffusers pipeline: it is an autoregressive "
            "multimodal model loaded with transformers' trust_remote_code, with no "
            "model_index.json; Tessera serves diffusers pipelines. Use HunyuanImage-2.1 "
            "(hunyuanvideo-community/HunyuanImage-2.1-Diffusers) instead.")),
]}

# Every family with a tiny builder gets a `tessera/tiny-<family>` entry.
for _spec in FAMILIES.values():
    if _spec.build_tiny is not None:
        _entry = CatalogEntry(
            f"{TINY_PREFIX}{_spec.name}", _spec.name, "apache-2.0", None,
            _spec.tiny_parameters or _spec.parameters,
            next(iter(_spec.pipelines.values())),
            f"tiny random-weight {_spec.display_name} checkpoint for tests and demos")
        CATALOG[_entry.id] = _entry


def price_per_image(model_id: str, family: str, pricing) -> float:
    """Config overrides first, then the catalog's price, then the family's, then the default."""
    if model_id in pricing.per_model:
        return pricing.per_model[model_id]
    entry = CATALOG.get(model_id)
    if entry is not None and entry.price_per_image is not None:
        return entry.price_per_image
    return pricing.per_family.get(family, pricing.default_per_image)


@dataclass(frozen=True)
class Terms:
    """What using a model agrees to: its licence, whether that needs acceptance, its price and
    its parameter bounds. Assembled here only, for validations and the catalog listing alike."""

    license: str | None
    requires_license_acceptance: bool
    price_per_image: float
    currency: str
    parameters: ParameterSpec


def model_terms(model_id: str, family: str, licence: str | None,
                parameters: ParameterSpec | None, config) -> Terms:
    entry = CATALOG.get(model_id)
    return Terms(
        license=licence, requires_license_acceptance=requires_acceptance(licence),
        price_per_image=price_per_image(model_id, family, config.pricing),
        currency=config.pricing.currency,
        parameters=parameters or (entry.parameters if entry else None)
        or FAMILIES[family].parameters)


def catalog_record(entry: CatalogEntry, config) -> ModelRecord:
    """A catalog model as every tenant sees it (owned by `tessera`)."""
    terms = model_terms(entry.id, entry.family, entry.license, entry.parameters, config)
    return ModelRecord(
        id=entry.id, tenant="tessera", hf_model_id=entry.id, family=entry.family,
        source=entry.source, name=entry.description or None,
        license=terms.license or "see model card",
        requires_license_acceptance=not license_accepted(entry, entry.license, config),
        price_per_image=terms.price_per_image, currency=terms.currency,
        parameters=terms.parameters)


def find_entry(name: str) -> CatalogEntry | None:
    """A catalog model by its Hugging Face id or its short name (`FLUX.1-schnell`,
    `tiny-flux`), letter case aside; None when no entry, or more than one, matches."""
    if name in CATALOG:
        return CATALOG[name]
    wanted = name.strip().lower()
    found = [e for e in CATALOG.values() if wanted in (e.id.lower(), e.short_name.lower())]
    return found[0] if len(found) == 1 else None


def unavailable_reason(entry: CatalogEntry, config) -> str | None:
    """Why a catalog model cannot run here, or None when it can."""
    spec = FAMILIES[entry.family]
    if entry.unsupported_reason:
        return entry.unsupported_reason
    if entry.family not in config.enabled_families():
        return f"the {spec.display_name} family ({entry.family}) is not deployed here"
    missing = [m for m in spec.needs_modules if importlib.util.find_spec(m) is None]
    if missing:
        return (f"its {spec.display_name} pipeline needs {', '.join(missing)}, which is not "
                "installed here")
    enabled = config.catalog.enabled
    if enabled is not None and not entry.builtin_tiny and entry.id not in enabled:
        return "not enabled for calls by name on this server (config catalog.enabled)"
    if not license_accepted(entry, entry.license, config):
        return (f"its licence {entry.license or 'unknown'!r} must be accepted first: by the "
                "operator for everyone (catalog.accepted_licenses), or by importing it "
                "(validate-hf, then import-hf with accepted_license: true) and calling the tm_* "
                "id")
    return weights_unreachable(entry)


def weights_unreachable(entry: CatalogEntry) -> str | None:
    """Why the model's weights can be neither read locally nor fetched now, or None.

    Blocking (the cache on disk, and at most one quick probe of the Hub, cached briefly)."""
    from serve_app.core.hub import cached_file, hub_offline, hub_unreachable

    if entry.builtin_tiny:
        return None
    repo = entry.base_model or entry.id
    cached, _ = cached_file(repo, FAMILIES[entry.family].index_file)
    if cached is not None:
        return None
    if hub_offline():
        return (f"its weights ({repo}) are not in the local Hugging Face cache, and "
                "HF_HUB_OFFLINE is set, so they cannot be fetched")
    from huggingface_hub import constants

    reason = hub_unreachable(constants.ENDPOINT)
    if reason:
        return (f"its weights ({repo}) are not in the local Hugging Face cache, and the Hub "
                f"cannot be reached ({reason})")
    return None


def license_accepted(entry: CatalogEntry, licence: str | None, config) -> bool:
    accepted = set(config.catalog.accepted_licenses)
    return not requires_acceptance(licence) or bool({entry.id, licence} & accepted)
