"""The native HTTP schema: pydantic models and nothing else.

Requests convert themselves into family parameters (`GenerationRequest.to_generate_params`),
the way vLLM's protocol turns a request into sampling parameters. Small value types the domain
already defines (a task's status, usage, error, progress, webhook state) are used as they are.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.core.keys import UPLOAD_TYPES
from serve_app.core.rules import (
    MAX_SEED,
    SIDE_MULTIPLE,
    fit_size,
    parse_duration,
    resolve_guidance,
    resolve_negative,
    resolve_steps,
    scale_into,
    seeds_for,
)
from serve_app.core.tasks import TaskError, TaskProgress, TaskStatus, Usage, WebhookState
from serve_app.core.types import (
    LORA_SCALE,
    MAX_CONTROLNETS,
    MAX_LORAS,
    MAX_REFERENCES,
    AdapterRef,
    ControlRef,
    GenerateParams,
    ModelSource,
    ParameterSpec,
    Preprocess,
    ReferenceRef,
    SafetyReport,
    TaskKind,
)

SIZE_PATTERN = r"^\s*(\d{1,5})\s*[xX×*]\s*(\d{1,5})\s*$"
SIZE_RE = re.compile(SIZE_PATTERN)
NOT_BLANK = r"\S"  # JSON Schema patterns search: "holds a non-space character"
# The envelope of every model's bounds, which the schema can promise whatever the model (each
# family's ParameterSpec lies inside it: a unit test checks). A model's own, tighter bounds are
# in its `parameters` (/v1/models) and are enforced per request.
API_MAX_STEPS = 100
API_MAX_GUIDANCE = 100.0
API_MIN_SIDE, API_MAX_SIDE = 64, 3072
# sides are rounded to SIDE_MULTIPLE first, so these raw values round into the envelope
_RAW_MIN_SIDE = API_MIN_SIDE - SIDE_MULTIPLE // 2
_RAW_MAX_SIDE = API_MAX_SIDE + SIDE_MULTIPLE // 2 - 1


def _set(name: str, json_type: str) -> dict:
    """JSON Schema: `name` is present and not null."""
    return {"required": [name], "properties": {name: {"type": json_type}}}


# `image_size` presets (Hyperstack's names): (width, height)
IMAGE_SIZES = {
    "square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}

# The size forms as JSON Schema, so generated clients know them: `size`, `width`+`height` or
# `image_size`, one of them; `width` and `height` together. (The model validator enforces the
# same.)
_SIZE_FORMS = {
    "not": {"anyOf": [{"allOf": [_set(a, t), {"required": [b],
                                              "properties": {b: {"not": {"type": "null"}}}}]}
                      for a, t, b in (("size", "string", "width"), ("size", "string", "height"),
                                      ("size", "string", "image_size"),
                                      ("width", "integer", "image_size"),
                                      ("height", "integer", "image_size"))]},
    "allOf": [{"if": _set(a, "integer"), "then": _set(b, "integer")}
              for a, b in (("width", "height"), ("height", "width"))],
}


class _Request(BaseModel):
    # Unknown fields are rejected so a typo ("num_steps") is an error, not a silent default.
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- models


class ValidateRequest(_Request):
    hf_model_id: str = Field(min_length=1, max_length=1024)
    base_model: str | None = Field(
        None, min_length=1, max_length=1024, description="LoRA repositories: the model the "
        "adapter runs on (a tm_* id, a catalog name or a Hub id); wins over the model card's")


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
    kind: Literal["pipeline", "lora", "controlnet"] = Field(
        "pipeline", description="pipeline: a diffusers checkpoint; lora: an adapter that runs "
        "on base_model; controlnet: a ControlNet of `family`, named in a generation's "
        "controlnets once imported")
    base_model: str | None = Field(None, description="LoRA: the base it runs on")
    rank: int | None = Field(None, description="LoRA: the adapter's rank")
    target_modules: list[str] = Field([], description="LoRA: the modules it adapts")
    size: int | None = Field(None, description="LoRA: the adapter file's bytes; ControlNet: "
                             "its weights' bytes")
    sha256: str | None = Field(None, description="LoRA: the adapter file's sha256")
    adapter_source: str | None = Field(None, description="LoRA: where the adapter was found")
    supports_loras: bool = Field(False, description="whether requests may add `loras` to it")


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
    available: bool = Field(True, description="whether it can run on this server")
    unavailable_reason: str | None = None
    kind: Literal["pipeline", "lora", "controlnet"] = Field(
        "pipeline", description="controlnet: not called as a model, but named in "
        "controlnets[].path of a generation with a model of its family")
    base_model: str | None = Field(None, description="a LoRA model: the base it runs on")
    supports_loras: bool = Field(False, description="whether requests may name `loras`")


class ImportedModel(ModelInfo):
    """The import answer: the model, with its id also as `model_id`."""

    model_id: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


# ---------------------------------------------------------------- images


class ImageSize(_Request):
    width: int = Field(ge=_RAW_MIN_SIDE, le=_RAW_MAX_SIDE)
    height: int = Field(ge=_RAW_MIN_SIDE, le=_RAW_MAX_SIDE)


class LoraWeight(_Request):
    """One adapter of a request: a tm_* LoRA model, a Hub id, or an http(s) URL."""

    path: str = Field(min_length=1, max_length=2048, description="a tm_* LoRA model you "
                      "imported, a Hugging Face repo id (owner/name or "
                      "owner/name/file.safetensors), or an http(s) URL of a .safetensors file")
    scale: float = Field(1.0, ge=-LORA_SCALE, le=LORA_SCALE)


class _TaskFields(_Request):
    """Fields of every request that makes a task: how its output is returned and how it is
    followed."""

    output_format: Literal["png", "jpeg", "webp"] = "png"
    response_format: Literal["url", "b64_json"] = "url"
    cancel_after: float | str | None = Field(
        None, description='a deadline from submission: seconds, or "90s", "5m", "1h" (the '
        "Cancel-After header says the same); queued past it the task is aborted, running "
        "past it canceled with error deadline_exceeded")
    webhook: str | None = Field(None, max_length=2048, description="an http(s) URL that "
                                "receives the task view, signed per Standard Webhooks")
    webhook_events_filter: list[Literal["start", "completed"]] = Field(
        ["completed"], min_length=1, description="start: when it starts running; completed: "
        "when it ends, whatever the outcome")
    safety_checker: bool = Field(True, description="false: this task's images are not "
                                 "checked (only for keys the operator allows it)")

    @field_validator("cancel_after")
    @classmethod
    def _cancel_after(cls, v: float | str | None) -> float | None:
        return None if v is None else parse_duration(v)

    @field_validator("webhook")
    @classmethod
    def _webhook_scheme(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("webhook must be an http(s) URL")
        return v

    @property
    def previews(self) -> bool:
        """Whether the task's event stream should carry previews."""
        return False


class _ImageRequest(_TaskFields):
    """Fields shared by generations and edits."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_SIZE_FORMS)

    model: str = Field(min_length=1, max_length=256)
    prompt: str = Field(min_length=1, max_length=4000, json_schema_extra={"pattern": NOT_BLANK})
    negative_prompt: str | None = Field(None, max_length=4000)
    n: int = Field(1, ge=1, le=4)
    size: str | None = Field(None, description='"WxH", e.g. "1024x768"; or width and height',
                             json_schema_extra={"pattern": SIZE_PATTERN})
    width: int | None = Field(None, ge=_RAW_MIN_SIDE, le=_RAW_MAX_SIDE)
    height: int | None = Field(None, ge=_RAW_MIN_SIDE, le=_RAW_MAX_SIDE)
    num_inference_steps: int | None = Field(None, ge=1, le=API_MAX_STEPS)
    guidance_scale: float | None = Field(None, ge=0, le=API_MAX_GUIDANCE)
    seed: int | None = Field(None, ge=-1, le=MAX_SEED, description="null or -1: random")
    image_size: Literal[tuple(IMAGE_SIZES)] | ImageSize | None = Field(  # type: ignore[valid-type]
        None, description="a preset, or {width, height}: another way to give the size")
    num_images: int | None = Field(None, ge=1, le=4, description="the same as n")
    preview: bool = Field(False, description="the events stream carries small preview images "
                          "of the latents every few steps")
    loras: list[LoraWeight] = Field([], max_length=MAX_LORAS, description="LoRA adapters, "
                                    "applied unfused in this order (at most 4)")
    lora_scale: float | None = Field(None, ge=-LORA_SCALE, le=LORA_SCALE, description="a "
                                     "LoRA model's own adapter scale (default 1.0)")

    @property
    def previews(self) -> bool:
        return self.preview

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt must not be blank")
        return v

    @field_validator("size")
    @classmethod
    def _size_shape(cls, v: str | None) -> str | None:
        if v is not None and not SIZE_RE.match(v):
            raise ValueError('size must look like "1024x768"')
        return v

    @model_validator(mode="after")
    def _size_forms(self):
        forms = [self.size is not None, self.width is not None or self.height is not None,
                 self.image_size is not None]
        if sum(forms) > 1:
            raise ValueError("give one of size, width and height, or image_size")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together")
        if self.num_images is not None and "n" in self.model_fields_set and (
                self.num_images != self.n):
            raise ValueError("n and num_images differ")
        return self

    @property
    def count(self) -> int:
        """Images asked for: `n`, or `num_images`."""
        return self.num_images or self.n

    @property
    def custom_size(self) -> bool:
        return any(v is not None for v in (self.size, self.width, self.image_size))

    def requested_size(self, default: tuple[int, int]) -> tuple[int, int]:
        if self.size is not None:
            w, h = SIZE_RE.match(self.size).groups()
            return int(w), int(h)
        if self.width is not None:
            return self.width, self.height
        if isinstance(self.image_size, ImageSize):
            return self.image_size.width, self.image_size.height
        if self.image_size is not None:
            return IMAGE_SIZES[self.image_size]
        return default

    def output_size(self, spec: ParameterSpec, warnings: list[str],
                    input_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The size to make, within the model's bounds: as asked, or an edit's input size
        (shrunk to fit) when none is asked."""
        if input_size is not None and not self.custom_size:
            return fit_size(*scale_into(*input_size, spec, warnings), spec, warnings)
        return fit_size(*self.requested_size((spec.width, spec.height)), spec, warnings)

    def to_generate_params(self, spec: ParameterSpec, warnings: list[str], *,
                           task: TaskKind = "text-to-image",
                           size: tuple[int, int] | None = None,
                           image_keys: list[str] | None = None, mask_key: str | None = None,
                           loras: list[AdapterRef] | None = None,
                           safety_check: bool = False,
                           controlnets: list[ControlRef] | None = None,
                           reference_images: list[ReferenceRef] | None = None,
                           reference_model: ModelSource | None = None) -> GenerateParams:
        """The pipeline parameters, the model's defaults and bounds applied (`rules`); what was
        adjusted on the way is added to `warnings`. `size` is `output_size`'s where the caller
        needed it first (an edit's mask is stored at it)."""
        width, height = size or self.output_size(spec, warnings)
        return GenerateParams(
            task=task, prompt=self.prompt,
            negative_prompt=resolve_negative(self.negative_prompt, spec), width=width,
            height=height, num_inference_steps=resolve_steps(self.num_inference_steps, spec),
            guidance_scale=resolve_guidance(self.guidance_scale, spec, warnings),
            seeds=seeds_for(self.seed, self.count), output_format=self.output_format,
            strength=self.task_strength(task, spec), image_keys=image_keys or [],
            mask_key=mask_key, loras=loras or [], safety_check=safety_check,
            controlnets=controlnets or [], reference_images=reference_images or [],
            reference_model=reference_model)

    def task_strength(self, task: str, spec: ParameterSpec) -> float | None:
        return None


class ImageRef(_Request):
    """An input image given by reference: exactly one of the fields."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        _set(name, "string") for name in ("image_url", "upload_id", "b64_json")]})

    image_url: str | None = Field(None, max_length=4096)
    upload_id: str | None = Field(None, max_length=128)
    b64_json: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if sum(v is not None for v in (self.image_url, self.upload_id, self.b64_json)) != 1:
            raise ValueError("give exactly one of image_url, upload_id, b64_json")
        return self


ImageInput = str | ImageRef


def image_source(value: ImageInput) -> tuple[str, str]:
    """("url" | "upload" | "base64", value) for any accepted spelling of an input image."""
    if not isinstance(value, str):  # an ImageRef
        if value.image_url is not None:
            return "url", value.image_url
        if value.upload_id is not None:
            return "upload", value.upload_id
        return "base64", value.b64_json
    if value.startswith(("http://", "https://")):
        return "url", value
    if value.startswith("upl_"):
        return "upload", value
    return "base64", value


IMAGE_FORMS = ("base64 (plain or data URI), an http(s) URL, an upload_id, or an object with one "
               "of image_url / upload_id / b64_json")


class ControlNetInput(_Request):
    """One ControlNet of a generation and its control image."""

    path: str = Field(min_length=1, max_length=1024, description="a tm_* ControlNet you "
                      "imported, a catalog ControlNet, or a Hugging Face repo id (owner/name)")
    image: ImageInput = Field(description=f"the control image: {IMAGE_FORMS}")
    conditioning_scale: float = Field(1.0, ge=0, le=2, description="how strongly it steers; 0 "
                                      "leaves the image exactly as without it")
    start: float = Field(0.0, ge=0, le=1, description="the fraction of the steps it acts from")
    end: float = Field(1.0, ge=0, le=1, description="the fraction of the steps it acts until")
    preprocess: Preprocess = Field("none", description="none: the image is the control image; "
                                   "canny: its edges (OpenCV); depth: its depth map")
    control_mode: int | str | None = Field(
        None, description="union ControlNets (FLUX): the kind of control image, by number or "
        "by name (canny, tile, depth, blur, pose, gray, low_quality)")

    @model_validator(mode="after")
    def _window(self):
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class ReferenceImage(_Request):
    """One reference image of a generation: a picture whose content or style it carries."""

    image: ImageInput = Field(description=IMAGE_FORMS)
    scale: float = Field(1.0, ge=0, le=2, description="how strongly it conditions; 0 leaves "
                         "the image exactly as without it")


class GenerationRequest(_ImageRequest):
    controlnets: list[ControlNetInput] = Field(
        [], max_length=MAX_CONTROLNETS, description="ControlNets and their control images (at "
        "most 2): FLUX, SDXL, SD 3.5 and Qwen-Image models")
    reference_images: list[ReferenceImage] = Field(
        [], max_length=MAX_REFERENCES, description="reference images (at most 4): FLUX models "
        "through Redux, SDXL models through an IP-Adapter")


class UpscaleRequest(_TaskFields):
    """An upscale: one input image made `scale` times larger by an upscaler model."""

    model: str = Field(min_length=1, max_length=256, description="an upscaler: GET "
                       "/v1/models?task=upscale")
    image: ImageInput = Field(description=IMAGE_FORMS)
    scale: int | None = Field(None, ge=2, le=8, description="the factor; each model has one "
                              "(its parameters.upscale_factor), the default")
    prompt: str | None = Field(None, max_length=4000, description="diffusion upscalers: what "
                               "the image shows")
    negative_prompt: str | None = Field(None, max_length=4000)
    num_inference_steps: int | None = Field(None, ge=1, le=API_MAX_STEPS)
    guidance_scale: float | None = Field(None, ge=0, le=API_MAX_GUIDANCE)
    seed: int | None = Field(None, ge=-1, le=MAX_SEED, description="null or -1: random")

    def to_generate_params(self, spec: ParameterSpec, warnings: list[str],
                           input_size: tuple[int, int], image_key: str,
                           safety_check: bool = False) -> GenerateParams:
        """The upscale's parameters: the output is the input times the model's factor."""
        factor = spec.upscale_factor
        width, height = input_size
        if not spec.prompt and self.prompt:
            warnings.append("this upscaler reads no prompt: prompt is ignored")
        return GenerateParams(
            task="upscale", prompt=(self.prompt or "") if spec.prompt else "",
            negative_prompt=resolve_negative(self.negative_prompt, spec),
            width=width * factor, height=height * factor,
            num_inference_steps=resolve_steps(self.num_inference_steps, spec),
            guidance_scale=resolve_guidance(self.guidance_scale, spec, warnings),
            seeds=seeds_for(self.seed, 1), output_format=self.output_format,
            image_keys=[image_key], safety_check=safety_check, upscale=factor)


# 1 to 4 reference images, in the schema; `EditRequest._some_images` says it in words
ImageList = Annotated[list[ImageInput], Field(json_schema_extra={"minItems": 1, "maxItems": 4})]


def _present(name: str) -> dict:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


class EditRequest(_ImageRequest):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        **_SIZE_FORMS, "oneOf": [_present("image"), _present("image_url")]})

    image: ImageInput | ImageList | None = Field(
        None, description="base64 (plain or data URI), an http(s) URL, an upload_id, or an "
        "object with one of image_url / upload_id / b64_json; a list for models that take "
        "several reference images")
    image_url: str | None = Field(None, max_length=4096,
                                  description="the input image's URL: the same as image")
    mask_image: ImageInput | None = Field(None, description="white is repainted, black kept")
    strength: float | None = Field(None, ge=0.0, le=1.0)

    @property
    def images(self) -> list[ImageInput]:
        if self.image is None:
            return [ImageRef(image_url=self.image_url)]
        return self.image if isinstance(self.image, list) else [self.image]

    @field_validator("image")
    @classmethod
    def _some_images(cls, v):
        if isinstance(v, list) and not 1 <= len(v) <= 4:
            raise ValueError("give between 1 and 4 images")
        return v

    @model_validator(mode="after")
    def _one_image_field(self):
        if (self.image is None) == (self.image_url is None):
            raise ValueError("give the input image as image or as image_url")
        return self

    def task_strength(self, task: str, spec: ParameterSpec) -> float | None:
        if task in ("image-to-image", "inpaint"):
            return spec.strength if self.strength is None else self.strength
        return None


# ---------------------------------------------------------------- uploads

class UploadRequest(_Request):
    content_type: Literal[tuple(UPLOAD_TYPES)]  # type: ignore[valid-type]
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
    job_id: str = Field(description="the same as task_id (Hyperstack's name)")
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
    nsfw: bool | None = Field(None, description="the safety checker flagged it; null: not "
                              "checked")


class TaskResult(BaseModel):
    created: str | None = Field(None, description="when the images were made, ISO 8601 UTC")
    data: list[ImageData]
    usage: Usage
    width: int
    height: int
    timings_ms: dict[str, float] = {}
    safety: SafetyReport | None = Field(None, description="what the safety checker did: its "
                                        "name, its action, how many images it flagged; null: "
                                        "the images were not checked")


class AdapterUse(BaseModel):
    """An adapter a task ran."""

    path: str
    scale: float
    sha256: str


class ControlNetUse(BaseModel):
    """A ControlNet a task ran, and its control image's sha256."""

    path: str
    conditioning_scale: float
    start: float
    end: float
    preprocess: str
    control_mode: int | None = None
    image_sha256: str


class ReferenceUse(BaseModel):
    """A reference image a task ran (its sha256)."""

    scale: float
    image_sha256: str


class TaskRequest(BaseModel):
    """A task's effective parameters: what it was asked for once the model's defaults and
    bounds were applied."""

    task: TaskKind
    prompt: str
    negative_prompt: str | None = None
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float | None = None
    strength: float | None = None
    seeds: list[int]
    output_format: str
    n: int
    response_format: Literal["url", "b64_json"]
    loras: list[AdapterUse] = []
    controlnets: list[ControlNetUse] = []
    reference_images: list[ReferenceUse] = []
    scale: int | None = Field(None, description="upscale tasks: the factor")
    safety_checker: bool = Field(False, description="whether the safety checker looks at its "
                                 "images")


class TaskView(BaseModel):
    id: str
    object: Literal["task"] = "task"
    status: TaskStatus
    model: str
    family: str
    created_at: float
    updated_at: float
    started_at: float | None = None
    completed_at: float | None = None
    queue_position: int | None = None
    progress: TaskProgress | None = Field(None, description="while in_progress: the denoising "
                                          "step the task's pipeline call has finished")
    attempts: int = Field(0, description="times the task was handed to a model server: more "
                          "than one when a server was lost while running it")
    history: list[dict[str, Any]] = []
    request: TaskRequest
    warnings: list[str] = []
    result: TaskResult | None = None
    error: TaskError | None = None
    cancel_at: float | None = Field(None, description="the deadline cancel_after set")
    metadata: dict[str, str] = {}
    webhook: WebhookState | None = None


class WebhookSecret(BaseModel):
    key: str = Field(description="whsec_…: verifies webhook-signature (Standard Webhooks)")


class TaskList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TaskView]


class ErrorBody(BaseModel):
    code: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
