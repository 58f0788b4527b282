"""The types every layer shares: what a model family is, what one task asks of it, and the
typed events a family server streams back.

A task's parameters take one form from the ingress to the pipeline call: `GenerateParams`,
built and validated once by the ingress (`wire.schema`), stored in the task, and sent to the family
server inside a `GenerateRequest`. The server answers with a stream of `Started`, `Step` and
finally `GenerateResult` events, which the task actor consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

TaskKind = Literal["text-to-image", "image-to-image", "inpaint", "edit", "upscale"]
OutputFormat = Literal["png", "jpeg", "webp"]
# the built-in tiny random-weight checkpoint of each family is `tessera/tiny-<family>`; tiny
# helper models (ControlNets, priors, adapters, depth) are `tessera/tiny-<name>` too
TINY_PREFIX = "tessera/tiny-"


def tiny_family(name: str) -> str | None:
    """The family of a built-in tiny checkpoint id (`tessera/tiny-<family>`), or None."""
    return name[len(TINY_PREFIX):] if name.startswith(TINY_PREFIX) else None


class ModelSource(BaseModel):
    """What a family server loads: a checkpoint (a built-in tiny id, a directory under the
    models directory, or a Hugging Face repo id) and, for a fine-tune shipped as transformer
    weights alone, where those are (a repo id or a directory) to load over its transformer."""

    model_config = ConfigDict(frozen=True)

    base: str
    transformer: str | None = None

    @property
    def key(self) -> str:
        """The model's id among a family server's multiplexed models (Serve's
        multiplexed_model_id): this value as JSON, read back with `from_key`."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_key(cls, key: str) -> ModelSource:
        return cls.model_validate_json(key)

    @property
    def tiny_family(self) -> str | None:
        return tiny_family(self.base)

    def __str__(self) -> str:
        return self.base if self.transformer is None else (
            f"{self.base} (transformer: {self.transformer})")


class ParameterSpec(BaseModel):
    """Defaults and bounds of one model's parameters, as the API reports and enforces them."""

    model_config = ConfigDict(frozen=True)

    num_inference_steps: int = 28
    min_steps: int = 1
    max_steps: int = 50
    guidance_scale: float | None = Field(3.5, description="None: the model takes no guidance")
    max_guidance_scale: float = 20.0
    width: int = 1024
    height: int = 1024
    min_side: int = 64
    max_side: int = 2048
    max_pixels: int = 2048 * 2048
    negative_prompt: bool = False
    strength: float = 0.8
    max_input_images: int = 1
    upscale_factor: int | None = Field(None, description="upscalers: the output's sides are "
                                       "the input's times this")
    prompt: bool = Field(True, description="whether the model reads a prompt")


def tiny_parameters(real: ParameterSpec) -> ParameterSpec:
    """A tiny checkpoint's parameters: the real model's, with few steps and small images."""
    return real.model_copy(update={"num_inference_steps": 4, "width": 256, "height": 256,
                                   "max_side": 1024, "max_pixels": 1024 * 1024})


MAX_LORAS = 4  # adapters a request may name (an imported LoRA model's own comes on top)
LORA_SCALE = 2.0  # |scale| bound of one adapter


class AdapterRef(BaseModel):
    """One LoRA adapter of a task, staged by the ingress: the family server reads its checked
    safetensors from the store at `key` (content-addressed by `sha256`) unless its cache has it."""

    model_config = ConfigDict(frozen=True)

    path: str  # as the client named it: a tm_* id, a Hub id, a URL
    scale: float = 1.0
    sha256: str
    key: str
    size: int


MAX_CONTROLNETS = 2  # ControlNets one generation may name
MAX_REFERENCES = 4  # reference images one generation may name
Preprocess = Literal["none", "canny", "depth"]


class ControlRef(BaseModel):
    """One ControlNet of a task, staged by the ingress: its weights, and its control image in
    the store (content-addressed by `image_sha256`), made into edges or depth by the replica
    when `preprocess` asks."""

    model_config = ConfigDict(frozen=True)

    path: str  # as the client named it
    source: ModelSource
    image_key: str
    image_sha256: str
    conditioning_scale: float = 1.0
    start: float = 0.0  # the fraction of the steps it acts from, and until
    end: float = 1.0
    preprocess: Preprocess = "none"
    # `preprocess: depth`: the depth-estimation model (resolved by the ingress from the config)
    depth_model: str | None = None
    control_mode: int | None = None  # a union ControlNet's mode

    @property
    def active(self) -> bool:
        """A ControlNet at scale 0 adds nothing: it is not run."""
        return self.conditioning_scale > 0


class ReferenceRef(BaseModel):
    """One reference image of a task (Redux on FLUX, an IP-Adapter on SDXL), in the store."""

    model_config = ConfigDict(frozen=True)

    image_key: str
    image_sha256: str
    scale: float = 1.0

    @property
    def active(self) -> bool:
        """A reference at scale 0 adds nothing: it is not run."""
        return self.scale > 0


class GenerateParams(BaseModel):
    """One task's pipeline parameters: validated and defaulted by the ingress, then unchanged."""

    model_config = ConfigDict(frozen=True)

    task: TaskKind = "text-to-image"
    prompt: str
    negative_prompt: str | None = None
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float | None
    seeds: list[int]
    output_format: OutputFormat = "png"
    strength: float | None = None
    image_keys: list[str] = []  # edits: the input images, already in the store
    mask_key: str | None = None
    # applied unfused, in this order; tasks share a call only with the same list
    loras: list[AdapterRef] = []
    # the replica's safety checker looks at the images before they are stored
    safety_check: bool = False
    controlnets: list[ControlRef] = []
    reference_images: list[ReferenceRef] = []
    # what turns the reference images into conditioning: the family's Redux prior or
    # IP-Adapter for this model (resolved by the ingress), when there are any
    reference_model: ModelSource | None = None
    upscale: int | None = None  # upscale tasks: the factor (the output is the input times it)


class GenerateRequest(BaseModel):
    """What the task actor sends a family server for one attempt at one task."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    tenant: str
    model: str  # the API's model id, for traces
    created_at: float  # dates the output keys
    params: GenerateParams
    trace_context: dict[str, str] = {}  # W3C carrier: the task's trace continues in the server
    preview: bool = False  # stream preview images with the steps
    file_prefix: str = ""  # output file names start with it


class Started(BaseModel):
    """The task's pipeline call began (it may share the call with other tasks)."""

    kind: Literal["started"] = "started"
    batch_tasks: int = 1


class Step(BaseModel):
    """One denoising step of the task's pipeline call finished."""

    kind: Literal["step"] = "step"
    step: int
    total_steps: int
    preview: str | None = None  # a small image of the latents so far (data URI), if asked


class StoredImage(BaseModel):
    key: str
    seed: int
    bytes: int
    content_type: str
    nsfw: bool | None = None  # the safety checker's verdict; None: not checked


class SafetyReport(BaseModel):
    """What the safety checker did to a task's images."""

    checker: str
    action: Literal["flag", "blur", "block"]
    flagged: int  # how many of the task's images it flagged


class GenerateResult(BaseModel):
    """The task's images, stored; the last event of a successful stream."""

    kind: Literal["result"] = "result"
    images: list[StoredImage]
    width: int  # what was made: some pipelines pick their own size
    height: int
    timings_ms: dict[str, float] = {}
    safety: SafetyReport | None = None  # None: no checker looked at them


GenerateEvent = Annotated[Union[Started, Step, GenerateResult], Field(discriminator="kind")]


@dataclass(frozen=True)
class ControlNetSpec:
    """How a family runs ControlNets: the model classes its ControlNets have (what validation
    recognises, what loads them), the class that runs several as one, the pipeline that runs
    its base with them, and the keyword that pipeline takes the control image as."""

    model_classes: tuple[str, ...]
    multi_class: str
    pipeline: str
    image_kwarg: str = "control_image"
    takes_mode: bool = False  # the pipeline passes a union ControlNet's `control_mode`
    max_controlnets: int = 2  # how many one call can run (diffusers' multi-ControlNet class)
    # config.json values a ControlNet of the family has (a class shared with other bases, as
    # SDXL's ControlNetModel is with SD 1.5's, is told apart by them)
    config_requires: tuple[tuple[str, Any], ...] = ()
    # config.json keys a ControlNet shares with the model's denoiser and must agree on (its
    # widths): a ControlNet made for another size of model is refused before the task runs
    fit_keys: tuple[str, ...] = ()
    # the pipeline samples the control image's VAE latents from torch's global generator
    # rather than the call's: its tasks run one per call, that generator seeded from the
    # task's first seed, so a task's bytes never depend on what else ran
    unseeded_encode: bool = False


@dataclass(frozen=True)
class FamilySpec:
    """A model family as data: which diffusers pipelines, which defaults, how to batch."""

    name: str
    display_name: str
    # diffusers pipeline class per task; the model's own class (model_index.json) is one of them
    pipelines: dict[str, str]
    parameters: ParameterSpec
    # further model_index.json classes that belong to this family
    extra_classes: tuple[str, ...] = ()
    # constant keyword arguments of every pipeline call (dropped where a pipeline lacks them)
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    # the keyword this family's pipelines take the API's guidance_scale as
    guidance_kwarg: str | None = "guidance_scale"
    # whether `image` is a list of reference images (several refs) rather than one image
    multi_image: bool = False
    # pipelines that take one prompt and make n images with num_images_per_prompt
    single_prompt: bool = False
    # text encoders that pad a batch to its longest prompt: another prompt in the batch would
    # change the sequence length and so the bits, so only the same prompt shares a call
    batch_by_prompt: bool = False
    # kept warm by the default config (one replica always up); the others scale to zero
    warm_by_default: bool = False
    # previews: latent channel -> (r, g, b) weights, then a bias, of a cheap linear projection
    # of the latents to RGB in [-1, 1]; None (or another channel count, as in the tiny
    # checkpoints) shows the first three latent channels, each stretched to its range
    latent_rgb: tuple[tuple[float, float, float], ...] | None = None
    latent_rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # whether every pipeline of the family loads LoRA adapters (diffusers' load_lora_weights):
    # data, so the ingress knows it without importing diffusers (a unit test checks it)
    takes_loras: bool = False
    # ControlNets (None: the family takes none)
    controlnet: ControlNetSpec | None = None
    # how reference images condition it: FLUX's Redux prior or an SDXL IP-Adapter (None: none)
    reference: Literal["redux", "ip-adapter"] | None = None
    # an upscaler: the factors its checkpoints can have (each checkpoint has one), and the
    # input tile it upscales at a time (larger inputs are cut into overlapping tiles)
    upscale_factors: tuple[int, ...] = ()
    upscale_tile: int = 256
    # loads a checkpoint directory into the object the server calls (None: diffusers'
    # DiffusionPipeline), and the file that marks such a directory
    load: Callable[[str, Any], Any] | None = None
    index_file: str = "model_index.json"
    # Python modules the family's pipelines need at run time beyond Tessera's own dependencies
    needs_modules: tuple[str, ...] = ()
    # writes a tiny random-weight checkpoint of the real pipeline with save_pretrained
    build_tiny: Callable[[str], None] | None = None
    tiny_parameters: ParameterSpec | None = None

    @property
    def tasks(self) -> list[str]:
        return list(self.pipelines)

    @property
    def pipeline_tag(self) -> str:
        return "text-to-image" if "text-to-image" in self.pipelines else "image-to-image"

    @property
    def pipeline_classes(self) -> tuple[str, ...]:
        return tuple(self.pipelines.values()) + self.extra_classes

    @property
    def deployment_name(self) -> str:
        return f"family-{self.name}"
