"""The rules a request meets on its way to a pipeline: sizes, guidance, which edit pipeline.

They depend on the chosen model's `ParameterSpec`, so they run after the schema has validated
the body (`wire.schema`), from the request's own `to_generate_params`.
"""

from __future__ import annotations

import re
import secrets

from serve_app.core.errors import InvalidRequestError, UnsupportedTaskError
from serve_app.core.types import ParameterSpec

SIDE_MULTIPLE = 16
MAX_SEED = 2**32 - 1


def resolve_steps(asked: int | None, spec: ParameterSpec) -> int:
    steps = asked or spec.num_inference_steps
    if not spec.min_steps <= steps <= spec.max_steps:
        raise InvalidRequestError(
            f"num_inference_steps must be between {spec.min_steps} and {spec.max_steps} "
            f"for this model", param="num_inference_steps")
    return steps


def resolve_negative(asked: str | None, spec: ParameterSpec) -> str | None:
    """A blank negative prompt is none; a model without one refuses it."""
    negative = (asked or "").strip() or None
    if negative and not spec.negative_prompt:
        raise InvalidRequestError("this model does not accept a negative_prompt",
                                  param="negative_prompt")
    return negative


def seeds_for(seed: int | None, n: int) -> list[int]:
    """Image i uses seed + i; a seed of None or -1 picks one at random."""
    base = secrets.randbelow(MAX_SEED) if seed in (None, -1) else seed
    return [(base + i) % (MAX_SEED + 1) for i in range(n)]


def route_edit(tasks: list[str], has_mask: bool, model_id: str) -> str:
    """Which pipeline task an edit request runs on this model, or why it cannot."""
    if has_mask:
        if "inpaint" not in tasks:
            raise UnsupportedTaskError(f"{model_id} cannot inpaint: it does {tasks}; drop "
                                       "mask_image or use an inpainting model",
                                       param="mask_image")
        return "inpaint"
    if "edit" in tasks:
        return "edit"
    if "image-to-image" in tasks:
        return "image-to-image"
    if "inpaint" in tasks:
        raise InvalidRequestError(f"{model_id} is an inpainting model: send mask_image",
                                  param="mask_image")
    raise UnsupportedTaskError(f"{model_id} does only {tasks}; it cannot edit images",
                               param="model")


def fit_size(width: int, height: int, spec: ParameterSpec, warnings: list[str]) -> tuple[int, int]:
    """Round each side to a multiple of 16, then enforce the model's bounds."""
    half = SIDE_MULTIPLE // 2  # round half up: 200 -> 208, not banker's 192
    w = max(SIDE_MULTIPLE, (width + half) // SIDE_MULTIPLE * SIDE_MULTIPLE)
    h = max(SIDE_MULTIPLE, (height + half) // SIDE_MULTIPLE * SIDE_MULTIPLE)
    if (w, h) != (width, height):
        warnings.append(f"size rounded from {width}x{height} to {w}x{h} "
                        f"(sides must be multiples of {SIDE_MULTIPLE})")
    if min(w, h) < spec.min_side or max(w, h) > spec.max_side:
        raise InvalidRequestError(
            f"each side must be between {spec.min_side} and {spec.max_side} pixels for this "
            f"model (got {w}x{h})", param="size")
    if w * h > spec.max_pixels:
        raise InvalidRequestError(
            f"{w}x{h} is {w * h} pixels; this model allows at most {spec.max_pixels}",
            param="size")
    return w, h


def scale_into(width: int, height: int, spec: ParameterSpec,
               warnings: list[str]) -> tuple[int, int]:
    """Shrink an input image's size, keeping its aspect ratio, until the model accepts it."""
    factor = min(1.0, spec.max_side / max(width, height),
                 (spec.max_pixels / (width * height)) ** 0.5)
    if factor < 1.0:
        # floor to the side multiple so rounding cannot push it back over the limit
        new = tuple(max(SIDE_MULTIPLE, int(side * factor) // SIDE_MULTIPLE * SIDE_MULTIPLE)
                    for side in (width, height))
        warnings.append(f"output size scaled from the input's {width}x{height} to "
                        f"{new[0]}x{new[1]} to fit this model's limits")
        return new
    return width, height


def resolve_guidance(asked: float | None, spec: ParameterSpec, warnings: list[str]) -> float | None:
    if spec.guidance_scale is None:
        if asked not in (None, 0):
            warnings.append("guidance_scale is ignored: this model is guidance-distilled")
        return 0.0
    if asked is None:
        return spec.guidance_scale
    if asked > spec.max_guidance_scale:
        raise InvalidRequestError(
            f"guidance_scale must be at most {spec.max_guidance_scale} for this model",
            param="guidance_scale")
    return asked


MAX_CANCEL_AFTER_S = 24 * 3600
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number of seconds or a string like "90", "90s", "5m", "1.5h", "500ms"
    (the `cancel_after` field and the `Cancel-After` header)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like \"90s\" or \"5m\"")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration: give seconds, or a string like "
                             "\"90s\", \"5m\" or \"1h\"")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= MAX_CANCEL_AFTER_S:
        raise ValueError(f"a deadline must be more than 0 and at most {MAX_CANCEL_AFTER_S} s")
    return seconds
