"""The safety checker: a transformers image-classification model that looks at every output
image on the family replica's device, in one batch per pipeline call, before anything is
stored (`FamilyServer`). An image is flagged when the summed probability of
`safety.flagged_labels` reaches `safety.threshold`; then `safety.action` keeps it marked
(`flag`), stores a heavily blurred copy instead (`blur`), or a black image of its size
(`block`).

`tessera/tiny-safety-checker` is a real `ViTForImageClassification` built on demand, with its
weights set so that its answer is known: on the image shrunk to 32x32, with m its mean red
value in [0, 1], p(nsfw) = sigmoid(1000 * (m - 0.5)). With the default threshold it flags
exactly the images whose mean red is above half scale.

Everything here is blocking; torch and transformers are imported inside functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from deployments import tiny
from serve_app.core.config import SafetySettings
from serve_app.core.paths import models_dir_path

logger = logging.getLogger("tessera.family")

TINY_CHECKER = "tessera/tiny-safety-checker"
LABELS = {0: "safe", 1: "nsfw"}
SIDE, PATCH = 32, 16  # the tiny checker's input and patches: four patches of 16x16
SLOPE = 1000.0  # the tiny checker's logit per unit of mean red above 0.5
_K = 100.0  # constant features that keep the layer norms linear in the red one
# the attention's value and output projections (identities: the class token takes the mean)
VALUE = ("vit.layers.0.attention.v_proj.weight",
         "vit.encoder.layer.0.attention.attention.value.weight")
OUTPUT = ("vit.layers.0.attention.o_proj.weight",
          "vit.encoder.layer.0.attention.output.dense.weight")


class CheckerError(Exception):
    """The configured checker cannot be used: the start stops with this message."""


def build_tiny_checker(path: str | Path) -> None:
    """Write the tiny checker (model and image processor) with save_pretrained. Hidden size 4:
    feature 0 carries a patch's mean red, features 1 and 2 the constants +K and -K (so each
    layer norm is linear in feature 0), 3 nothing. Attention is uniform (zero queries and
    keys), so the class token takes the patches' mean; the classifier reads feature 0."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(image_size=SIDE, patch_size=PATCH, num_channels=3, hidden_size=4,
                       num_hidden_layers=1, num_attention_heads=1, intermediate_size=4,
                       id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    model = ViTForImageClassification(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                p.fill_(1.0)
        embeddings = model.vit.embeddings
        # pixels arrive normalised to [-1, 1]: feature 0 is the patch's mean of 2r - 1
        embeddings.patch_embeddings.projection.weight[0, 0] = 1.0 / PATCH ** 2
        constants = torch.tensor([0.0, _K, -_K, 0.0])
        embeddings.patch_embeddings.projection.bias.copy_(constants)
        embeddings.cls_token[0, 0].copy_(constants)
        params = dict(model.named_parameters())
        for names in (VALUE, OUTPUT):  # the names differ between transformers 4 and 5
            params[next(n for n in names if n in params)].copy_(torch.eye(4))
        model.classifier.weight[1, 0] = 1.0
        # scale the nsfw logit to SLOPE per unit of mean red: measured, the network being
        # linear in it (a mean red of 0.5 + d gives a feature-0 value proportional to d)
        probe = torch.full((1, 3, SIDE, SIDE), 0.02)  # a mean red of 0.51, normalised
        model.classifier.weight[1, 0] = SLOPE * 0.01 / float(model(probe).logits[0, 1])
    model.save_pretrained(str(path), safe_serialization=True)
    ViTImageProcessor(size={"height": SIDE, "width": SIDE}, image_mean=[0.5] * 3,
                      image_std=[0.5] * 3).save_pretrained(str(path))


def checker_source(settings: SafetySettings, data_dir: str | Path, models_dir: Path) -> str:
    """Where the configured checker loads from: the tiny checker's directory (built here if
    need be), a directory under the models directory, or a Hugging Face repo id."""
    name = settings.checker
    if name == TINY_CHECKER:
        return str(tiny.write_once(tiny.checkpoint_path(data_dir, "safety-checker"),
                                   "config.json", build_tiny_checker))
    local = models_dir_path(name, models_dir)
    if local is not None:
        return str(local)
    if name.startswith(("/", ".", "~")) or name.count("/") != 1:
        raise CheckerError(f"safety.checker {name!r} is neither a directory under the models "
                           "directory nor a Hugging Face repo id (owner/name)")
    return name


def check_settings(settings: SafetySettings, data_dir: str | Path, models_dir: Path) -> str:
    """What a start verifies before it serves: the checker is an image classifier that can be
    read, with the flagged labels among its own. Its source, or CheckerError naming the
    setting."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    )

    source = checker_source(settings, data_dir, models_dir)
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as exc:
        raise CheckerError(f"safety.checker {settings.checker!r} could not be read: "
                           f"{type(exc).__name__}: {str(exc)[:300]}") from None
    if config.model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        raise CheckerError(f"safety.checker {settings.checker!r} is a {config.model_type} "
                           "model, not an image classifier")
    labels = {str(v).lower() for v in (config.id2label or {}).values()}
    missing = [label for label in settings.flagged_labels if label.lower() not in labels]
    if missing:
        raise CheckerError(f"safety.flagged_labels {missing} are not labels of "
                           f"{settings.checker!r} (its labels: {sorted(labels)})")
    return source


@dataclass
class Verdict:
    flagged: list[bool]
    scores: list[float]


class SafetyChecker:
    """The configured classifier on the replica's device, and what it does to what it flags."""

    def __init__(self, settings: SafetySettings, source: str, device: str, dtype=None):
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.settings = settings
        self.name = settings.checker
        self.device = device
        self.processor = AutoImageProcessor.from_pretrained(source)
        # safetensors only: a checkpoint a deployment names is never unpickled
        model = AutoModelForImageClassification.from_pretrained(source, use_safetensors=True)
        self.dtype = dtype if dtype is not None else torch.float32
        self.model = model.to(device=device, dtype=self.dtype).eval()
        wanted = {label.lower() for label in settings.flagged_labels}
        self.flagged_ids = [int(i) for i, label in model.config.id2label.items()
                            if str(label).lower() in wanted]

    def verdict(self, images: list) -> Verdict:
        """One batch: each image's summed probability of the flagged labels."""
        import torch

        if not images:
            return Verdict([], [])
        inputs = self.processor(images=[im.convert("RGB") for im in images],
                                return_tensors="pt")
        pixels = inputs["pixel_values"].to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            probs = self.model(pixel_values=pixels).logits.float().softmax(-1)
        scores = probs[:, self.flagged_ids].sum(-1).tolist()
        return Verdict([s >= self.settings.threshold for s in scores], scores)

    def apply(self, image, flagged: bool):
        """What the action makes of an image (unflagged ones, and `flag`, keep theirs)."""
        if not flagged or self.settings.action == "flag":
            return image
        return censored(image, self.settings.action)


def censored(image, action: str):
    """A heavily blurred copy (`blur`), or a black image of the same size and mode (`block`)."""
    from PIL import Image, ImageFilter

    if action == "block":
        return Image.new(image.mode, image.size)
    return image.filter(ImageFilter.GaussianBlur(radius=max(8, max(image.size) // 12)))
