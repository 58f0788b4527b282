"""The HTTP schema: pydantic models and nothing else.

Requests convert themselves into family parameters (`GenerationRequest.to_generate_params`),
the way vLLM's protocol turns a request into sampling parameters.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.base import GenerateParams, ParameterSpec
from serve_app.errors import InvalidRequestError

SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×*]\s*(\d{1,5})\s*$")
SIDE_MULTIPLE = 16
MAX_SEED = 2**32 - 1


class _Request(BaseModel):
    # Unknown fields are rejected so a typo ("num_steps") is an error, not a silent default.
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- models


class ValidateRequest(_Request):
    hf_model_id: str = Field(min_length=1, max_length=1024)


class Pricing(BaseModel):
    per_image: float
    currency: str = "USD"


class ValidateResponse(BaseModel):
    object: Literal["model_validation"] = "model_validation"
    validation_id: str
    hf_model_id: str
    supported: bool
    errors: list[str] = []
    warnings: list[str] = []
    family: str | None = None
    pipeline_class: str | None = None
    pipeline_tag: str | None = None
    tasks: list[str] = []
    license: str | None = None
    requires_license_acceptance: bool = False
    pricing: Pricing | None = None
    parameters: ParameterSpec | None = None
    source: str | None = Field(None, description="where the weights were found")


class ImportRequest(_Request):
    validation_id: str = Field(min_length=1, max_length=128)
    execution_mode: Literal["instant"] = "instant"
    accepted_license: bool = False
    name: str | None = Field(None, max_length=128, description="optional display name")


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str
    name: str | None = None
    hf_model_id: str
    family: str
    pipeline_tag: str
    tasks: list[str]
    license: str
    requires_license_acceptance: bool = False
    pricing: Pricing
    parameters: ParameterSpec
    created_at: float | None = None
    execution_mode: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


# ---------------------------------------------------------------- images


class GenerationRequest(_Request):
    model: str = Field(min_length=1, max_length=256)
    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str | None = Field(None, max_length=4000)
    n: int = Field(1, ge=1, le=4)
    size: str | None = Field(None, description='"WxH", e.g. "1024x768"')
    width: int | None = Field(None, ge=1, le=16384)
    height: int | None = Field(None, ge=1, le=16384)
    num_inference_steps: int | None = Field(None, ge=1, le=1000)
    guidance_scale: float | None = Field(None, ge=0, le=100)
    seed: int | None = Field(None, ge=-1, le=MAX_SEED)
    output_format: Literal["png", "jpeg", "webp"] = "png"
    response_format: Literal["url", "b64_json"] = "url"

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt must not be blank")
        return v

    @model_validator(mode="after")
    def _size_forms(self):
        if self.size is not None and (self.width is not None or self.height is not None):
            raise ValueError("give either size or width and height, not both")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together")
        if self.size is not None and not SIZE_RE.match(self.size):
            raise ValueError('size must look like "1024x768"')
        return self

    def requested_size(self, spec: ParameterSpec) -> tuple[int, int]:
        if self.size is not None:
            w, h = SIZE_RE.match(self.size).groups()
            return int(w), int(h)
        if self.width is not None:
            return self.width, self.height
        return spec.width, spec.height

    def to_generate_params(self, *, task_id: str, tenant: str, spec: ParameterSpec,
                           created_at: float) -> tuple[GenerateParams, list[str]]:
        """Apply the model's defaults and bounds; return the parameters and what was adjusted."""
        warnings: list[str] = []
        width, height = fit_size(*self.requested_size(spec), spec, warnings)
        steps = self.num_inference_steps or spec.num_inference_steps
        if not spec.min_steps <= steps <= spec.max_steps:
            raise InvalidRequestError(
                f"num_inference_steps must be between {spec.min_steps} and {spec.max_steps} "
                f"for this model", param="num_inference_steps")
        guidance = resolve_guidance(self.guidance_scale, spec, warnings)
        negative = (self.negative_prompt or "").strip() or None
        if negative and not spec.negative_prompt:
            raise InvalidRequestError("this model does not accept a negative_prompt",
                                      param="negative_prompt")
        base_seed = secrets.randbelow(MAX_SEED) if self.seed in (None, -1) else self.seed
        seeds = [(base_seed + i) % (MAX_SEED + 1) for i in range(self.n)]
        params = GenerateParams(
            task_id=task_id, tenant=tenant, model_id=self.model, prompt=self.prompt,
            negative_prompt=negative, width=width, height=height, num_inference_steps=steps,
            guidance_scale=guidance, seeds=seeds, output_format=self.output_format,
            created_at=created_at)
        return params, warnings


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


# ---------------------------------------------------------------- uploads

UPLOAD_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class UploadRequest(_Request):
    content_type: Literal["image/png", "image/jpeg", "image/webp"]
    size: int = Field(ge=1, description="bytes the client will PUT")


class UploadCreated(BaseModel):
    upload_id: str
    object: Literal["upload"] = "upload"
    upload_url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_at: float
    max_bytes: int


class UploadInfo(BaseModel):
    upload_id: str
    object: Literal["upload"] = "upload"
    status: Literal["uploaded"] = "uploaded"
    size: int
    content_type: str


# ---------------------------------------------------------------- tasks


class TaskCreated(BaseModel):
    task_id: str
    object: Literal["task"] = "task"
    status: str
    model: str
    created_at: float
    queue_position: int | None = None
    warnings: list[str] = []


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    seed: int
    content_type: str


class Usage(BaseModel):
    images: int
    output_tokens: int
    cost: float
    currency: str = "USD"
    runtime_ms: float | None = None


class TaskResult(BaseModel):
    data: list[ImageData]
    usage: Usage
    width: int
    height: int
    timings_ms: dict[str, float] = {}


class TaskError(BaseModel):
    code: str
    message: str


class TaskView(BaseModel):
    id: str
    object: Literal["task"] = "task"
    status: Literal["queued", "in_progress", "completed", "failed"]
    model: str
    family: str
    created_at: float
    updated_at: float
    started_at: float | None = None
    completed_at: float | None = None
    queue_position: int | None = None
    history: list[dict[str, Any]] = []
    request: dict[str, Any] = {}
    warnings: list[str] = []
    result: TaskResult | None = None
    error: TaskError | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
