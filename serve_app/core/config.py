"""The one validated configuration.

`serve run` (through `build_app`), the tests and the RayService `serveConfigV2` all build a
`TesseraConfig`. Only endpoints and secrets come from the environment (`apply_env`); everything
else is data in this model, so a config file and the embedded defaults are checked the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.core.types import ModelSource


class _Strict(BaseModel):
    # A misspelt key in a config file should fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


class AutoscalingSettings(_Strict):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    downscale_to_zero_delay_s: float | None = None
    metrics_interval_s: float = Field(
        10.0, gt=0, description="how often replicas and handles report their load to Serve's "
        "controller (Serve's default); lower it only to react within seconds, as demos do")
    look_back_period_s: float = Field(30.0, gt=0, description="window the load is averaged over")

    @model_validator(mode="after")
    def _window_holds_reports(self) -> AutoscalingSettings:
        # Serve averages the reports inside the window: a window shorter than one report
        # interval sees at most one (Serve warns today and will refuse it later).
        if self.look_back_period_s <= self.metrics_interval_s:
            raise ValueError(f"look_back_period_s ({self.look_back_period_s}) must be greater "
                             f"than metrics_interval_s ({self.metrics_interval_s})")
        return self


class DeploymentSettings(_Strict):
    """How one Serve deployment is placed and scaled."""

    num_replicas: int | None = Field(None, ge=1,
                                     description="fixed replica count; None = autoscale")
    autoscaling: AutoscalingSettings = AutoscalingSettings()
    num_cpus: float = Field(0.1, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    accelerator_type: str | None = None
    max_ongoing_requests: int = Field(4, ge=1)

    def serve_options(self) -> dict:
        actor = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.accelerator_type:
            actor["accelerator_type"] = self.accelerator_type
        opts: dict = {"ray_actor_options": actor, "max_ongoing_requests": self.max_ongoing_requests}
        if self.num_replicas is not None:
            opts["num_replicas"] = self.num_replicas
        else:
            opts["autoscaling_config"] = self.autoscaling.model_dump(exclude_none=True)
        return opts


class OptimizationSettings(_Strict):
    """How a family's pipelines run on the device. `None` means: on where the device is CUDA,
    off on CPU (loadtests/bench_gpu measured each switch; the README has the table)."""

    compile: bool | None = Field(
        None, description="torch.compile the denoiser's repeated blocks (regional compilation: "
        "diffusers' compile_repeated_blocks), so a cold start compiles one block, not the model")
    fuse_qkv: bool = Field(
        False, description="fuse each attention's query, key and value projections into one "
        "matrix product (diffusers' fuse_qkv_projections), where the model supports it")
    quantization: Literal["fp8"] | None = Field(
        None, description="fp8: dynamic float8 quantization of the denoiser's linear layers "
        "through torchao (Hopper or newer); None: the device dtype")
    attention_backend: str | None = Field(
        None, description="diffusers' attention dispatcher backend, e.g. flash, _native_cudnn, "
        "native; None: diffusers' default (PyTorch SDPA)")
    compile_mode: Literal["default", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode for the denoiser: max-autotune-no-cudagraphs "
        "also times Triton matrix kernels against cuBLAS (a longer cold start)")
    inductor_tuning: bool = Field(
        False, description="Inductor's coordinate-descent tuning of the generated kernels, 1x1 "
        "convolutions as matrix products and no epilogue fusion (process-wide: a replica serves "
        "one family)")
    compile_vae: bool = Field(
        False, description="torch.compile the VAE decoder, in channels-last layout")
    vae_tiling_min_pixels: int | None = Field(
        2048 * 2048, ge=1, description="decode (and encode) in tiles from this many output pixels "
        "on, so large sizes fit in memory; None: never")
    warmup: bool | None = Field(
        None, description="after a model loads, one short pipeline call (which also compiles) "
        "before it serves; preloaded models warm up before the replica reports healthy")
    batch_invariant: bool | None = Field(
        None, description="the same bytes alone or in a batch: per-sample execution of the "
        "position-sensitive layers while batching (max_batch_size > 1); None: on CPU only "
        "(on an H100 it cost FLUX.1 12% of its batch-4 throughput at 1024²)")

    def resolved(self, device: str) -> "OptimizationSettings":
        on_cuda = device == "cuda"

        def default(value: bool | None, on: bool) -> bool:
            return on if value is None else value

        return self.model_copy(update={
            "compile": default(self.compile, on_cuda),
            "warmup": default(self.warmup, on_cuda),
            "batch_invariant": default(self.batch_invariant, not on_cuda)})


class LoraSettings(_Strict):
    """LoRA adapters that requests name (`loras`) and LoRA repositories imported as models."""

    max_bytes: int = Field(2 * 1024 ** 3, ge=1024, description="largest adapter file; larger "
                           "ones answer payload_too_large")
    max_tensors: int = Field(4096, ge=1, description="tensors one adapter file may hold")
    max_rank: int = Field(256, ge=1, description="highest LoRA rank accepted")
    url_timeout_s: float = Field(120.0, gt=0, description="fetching one adapter by URL, "
                                 "redirects included")
    remember_s: float = Field(
        600.0, ge=0, description="an adapter fetched by URL is not fetched again for this long "
                                 "(the ingress remembers its sha256 and the store keeps it)")


class ControlSettings(_Strict):
    """ControlNets (`controlnets` on generations) and their control images."""

    depth_model: str | None = Field(
        None, description="the transformers depth-estimation model of preprocess: depth (a "
        "Hugging Face id, e.g. depth-anything/Depth-Anything-V2-Small-hf, or a directory under "
        "the models directory); None: the tiny models use tessera/tiny-depth and other models "
        "refuse preprocess: depth")
    max_controlnets_per_replica: int = Field(
        2, ge=1, description="ControlNets each family replica keeps loaded (LRU)")


class FamilySettings(DeploymentSettings):
    enabled: bool = True
    reference_model: str | None = Field(
        None, description="what turns reference_images into conditioning for this family's "
        "models: FLUX, a FLUX.1 Redux prior (black-forest-labs/FLUX.1-Redux-dev); SDXL, an "
        "IP-Adapter (a directory or repo holding ip-adapter.safetensors and image_encoder/, or "
        "h94/IP-Adapter/sdxl_models/ip-adapter_sdxl.safetensors); None: the tiny models use "
        "their tiny one and other models refuse reference_images")
    optimization: OptimizationSettings = OptimizationSettings()
    preload_models: list[ModelSource] = Field(
        default_factory=list, description="models each replica loads and warms up before it "
        "reports healthy: tessera/tiny-flux, a Hugging Face id or a directory, or "
        "{base, transformer} for a fine-tune's transformer weights over a base")
    max_models_per_replica: int = Field(2, ge=1)
    max_batch_size: int = Field(
        4, ge=1, description="most tasks Serve gathers into one batch, and most images in one "
        "pipeline call (a task asking for more runs alone); 1 turns batching off. A replica "
        "holds at most max_ongoing_requests tasks, so batches are no bigger than that")
    batch_wait_timeout_s: float = Field(
        0.05, ge=0, description="how long a batch waits for more tasks after its first")
    max_queued: int = Field(1000, ge=1, description="queued tasks per family before 429")
    torch_threads: int | None = Field(
        None, ge=1, description="CPU execution: intra-op threads; default: as Ray sets them "
                                "(OMP_NUM_THREADS from the replica's num_cpus)")
    dispatch_concurrency: int | None = Field(
        None, ge=1, description="tasks sent to the deployment at once; default replicas x ongoing")
    lora_cpu_cache_bytes: int = Field(
        4 * 1024 ** 3, ge=0, description="checked adapters each replica keeps in CPU memory "
        "(LRU by sha256), so a repeated adapter is not read from the store again")
    lora_device_cache_bytes: int = Field(
        2 * 1024 ** 3, ge=0, description="adapters each replica keeps loaded beside the base "
        "on the device (LRU), so a repeated adapter is not loaded again")
    lora_hotswap_rank: int = Field(
        128, ge=1, description="compiled replicas: adapters are hot-swapped into slots of this "
        "rank (diffusers' enable_lora_hotswap), so a new adapter does not recompile; a "
        "higher-rank adapter is refused there with lora_incompatible")
    cold_start_deadline_s: float | None = Field(
        None, gt=0, description="a task handed to the family that has not started within this "
        "fails with cold_start_timeout: scaling up from zero, a new GPU node and the model load "
        "must fit in it; None: only the task deadline applies")

    @field_validator("preload_models", mode="before")
    @classmethod
    def _plain_names(cls, value):
        """A plain name in a config file is a checkpoint with no transformer override."""
        if isinstance(value, list):
            return [{"base": v} if isinstance(v, str) else v for v in value]
        return value


class LocalStoreSettings(_Strict):
    subdir: str = "outputs"


class S3StoreSettings(_Strict):
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    bucket: str = "tessera-outputs"
    secure: bool = False
    region: str = "us-east-1"


class StorageSettings(_Strict):
    url_ttl_s: int = Field(3600, ge=1, le=7 * 24 * 3600)
    public_base_url: str | None = None
    retention_days: float | None = Field(None, gt=0, description="delete outputs older than")
    retention_sweep_interval_s: float = Field(600.0, gt=0)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1)
    upload_ttl_s: int = Field(900, ge=1, le=7 * 24 * 3600)
    local: LocalStoreSettings = LocalStoreSettings()
    s3: S3StoreSettings = S3StoreSettings()

    @property
    def backend(self) -> Literal["local", "s3"]:
        return "s3" if self.s3.endpoint else "local"


class PricingSettings(_Strict):
    currency: str = "USD"
    per_model: dict[str, float] = Field(default_factory=dict,
                                        description="price per image by catalog id; overrides")
    per_family: dict[str, float] = Field(default_factory=dict)
    default_per_image: float = 0.01


class InputSettings(_Strict):
    """Input images of edits."""

    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="decompression-bomb guard")
    url_timeout_s: float = Field(10.0, gt=0)
    allow_private_urls: bool = Field(False, description="let image_url and webhook URLs reach "
                                     "loopback/private addresses (TESSERA_ALLOW_PRIVATE_URLS)")


class TracingSettings(_Strict):
    exporter: Literal["none", "console", "file", "otlp"] = Field(
        "none", description="otlp for clusters; console or file for local runs")
    path: str | None = Field(None, description="file exporter; default <data_dir>/traces.jsonl")
    otlp_endpoint: str | None = Field(None, description="e.g. http://otel-collector:4318")
    sample_ratio: float = Field(1.0, ge=0, le=1)
    service_name: str = "tessera"


class CatalogSettings(_Strict):
    """Catalog models every tenant can call by name (Hugging Face id or short name)."""

    enabled: list[str] | None = Field(
        None, description="catalog ids callable by name; None: every catalog model of a "
        "deployed family (the built-in tiny ones always)")
    accepted_licenses: list[str] = Field(
        default_factory=list, description="licence ids (flux-1-dev-non-commercial-license) or "
        "model ids whose licence the operator accepted for every tenant; a model under a "
        "licence that needs acceptance is callable by name only when listed here")


class SafetyTenantSettings(_Strict):
    allow_disable: bool = Field(False, description="the tenant may turn the checker off per "
                                "request (safety_checker: false, fal's enable_safety_checker: "
                                "false, Replicate's disable_safety_checker: true)")


class SafetySettings(_Strict):
    """The safety checker every output image passes before it is stored ([safety](safety.md))."""

    checker: str | None = Field(
        None, description="a transformers image-classification model: a Hugging Face repo id "
        "(Falconsai/nsfw_image_detection), a directory under the models directory, or "
        "tessera/tiny-safety-checker (TESSERA_SAFETY_CHECKER); None: images are unchecked")
    flagged_labels: list[str] = Field(["nsfw"], min_length=1,
                                      description="the checker's labels that flag an image")
    threshold: float = Field(0.5, ge=0, le=1, description="an image is flagged when the summed "
                             "probability of the flagged labels reaches it")
    action: Literal["flag", "blur", "block"] = Field(
        "blur", description="flag: keep the image, marked; blur: store a heavily blurred image "
        "instead; block: store a black image of the same size instead")
    tenants: dict[str, SafetyTenantSettings] = Field(default_factory=dict)

    def may_disable(self, tenant: str) -> bool:
        settings = self.tenants.get(tenant)
        return settings is not None and settings.allow_disable


class CompatSettings(_Strict):
    """The compatibility dialects (OpenAI, hosted services' APIs)."""

    default_model: str = Field("tessera/tiny-flux", description="routes that name no model")
    sync_wait_s: float = Field(
        300.0, gt=0, description="how long a synchronous dialect's request waits for its task "
        "before answering 504 (the task goes on)")


class WebhookSettings(_Strict):
    signing_key: str | None = Field(
        None, description="secret the per-tenant whsec_ secrets derive from (env "
        "TESSERA_WEBHOOK_SIGNING_KEY); default: one made on first use and kept in the database")
    max_attempts: int = Field(10, ge=1, description="tries per delivery")
    backoff_base_s: float = Field(
        5.0, gt=0, description="wait before the second try; doubled each time (10 tries span "
        "about 43 minutes)")
    timeout_s: float = Field(10.0, gt=0, description="one delivery request")


class LimitSettings(_Strict):
    task_deadline_s: float = Field(900.0, gt=0)
    max_queued_per_tenant: int = Field(500, ge=1)
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="largest request body; a larger declared "
        "Content-Length is refused with 413 before any of it is read (the API key is checked "
        "first, so an unauthenticated body gets 401 at once)")
    max_streams_per_tenant: int = Field(
        32, ge=1, description="event streams one tenant may hold open at once in each ingress "
        "replica; past it, 429 with Retry-After")
    max_waiting_per_tenant: int = Field(
        32, ge=1, description="requests one tenant may have waiting for a task at once in each "
        "ingress replica (long polls, Prefer: wait, the synchronous dialects); past it, 429")
    max_pending_uploads: int = Field(
        100, ge=1, description="upload links one tenant may hold that have not expired")
    max_pending_upload_bytes: int = Field(
        1024 * 1024 * 1024, ge=1, description="bytes those open upload links may declare in all")
    max_validations_per_hour: int = Field(
        120, ge=1, description="validate-hf calls per tenant in any hour (each reads, and may "
        "fetch, a checkpoint)")
    max_imports_per_hour: int = Field(60, ge=1, description="import-hf calls per tenant per hour")
    max_upscale_input_pixels: int = Field(
        2 * 1024 * 1024, ge=64 * 64, description="largest input of /v1/images/upscale in "
        "pixels; larger ones answer 413 (inputs are upscaled in tiles, so the model's memory "
        "does not grow with the input, but the output does: x4 of this many pixels)")
    keep_finished_s: float = Field(
        300.0, ge=0, description="a finished task stays in the task actor's memory this long; "
        "after that it is read from the database, so the actor's memory stays bounded")


class DatabaseSettings(_Strict):
    url: str | None = Field(
        None, description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default: "
        "SQLite at <data_dir>/tessera.db (WAL). TESSERA_DATABASE_URL sets it (it may carry a "
        "password, so keep it out of config files)")
    read_wait_s: float = Field(
        5.0, gt=0, description="how long a read waits for its task's pending commit before it "
        "answers 503 with Retry-After (the database is unreachable meanwhile)")


class TesseraConfig(_Strict):
    data_dir: str = "./.tessera"
    public_url: str | None = Field(
        None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", description="the URL clients "
        "reach this server at: signed file links, upload links and Location headers are built "
        "on it (TESSERA_PUBLIC_URL); default: the server's own HTTP bind address. Never taken "
        "from a request's Host header")
    models_dir: str | None = Field(
        None, description="the only place local model directories are imported from "
        "(TESSERA_MODELS_DIR); default <data_dir>/models. A path elsewhere answers exactly like "
        "a missing one")
    allow_pickle_weights: bool = Field(
        False, description="load checkpoints whose weights are only pickles (.bin, .pt, .ckpt); "
        "off: safetensors only, so no file a tenant names is ever unpickled")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    instance: str = Field("tessera", pattern=r"^[a-z0-9][a-z0-9-]{0,40}$",
                          description="names the task and model actors; one per Ray cluster")
    # The ingress only awaits actors and the store: many requests in flight cost little.
    # Each tenant's held requests are capped (limits.max_*_per_tenant), so this is room for many
    # tenants at once, and for /healthz beside them.
    ingress: DeploymentSettings = DeploymentSettings(num_replicas=1, max_ongoing_requests=1024)
    families: dict[str, FamilySettings] | None = Field(
        None, description="listed: deployed (with `enabled` to switch one off); omitted: every "
        "family with its defaults. Names are checked against the registry where the app is built")
    storage: StorageSettings = StorageSettings()
    pricing: PricingSettings = PricingSettings()
    limits: LimitSettings = LimitSettings()
    database: DatabaseSettings = DatabaseSettings()
    inputs: InputSettings = InputSettings()
    webhooks: WebhookSettings = WebhookSettings()
    catalog: CatalogSettings = CatalogSettings()
    loras: LoraSettings = LoraSettings()
    control: ControlSettings = ControlSettings()
    compat: CompatSettings = CompatSettings()
    safety: SafetySettings = SafetySettings()
    tracing: TracingSettings = TracingSettings()
    build_tiny_models: bool = True

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir) if self.models_dir else Path(self.data_dir) / "models"

    def enabled_families(self) -> dict[str, FamilySettings]:
        """The deployed families (of a config whose families the builder has resolved)."""
        return {name: s for name, s in (self.families or {}).items() if s.enabled}


def default_family_settings(warm: bool) -> FamilySettings:
    """A family not named in the config: warm (one replica always up) or scaled to zero until
    its first task, with a cold-start deadline."""
    if warm:
        return FamilySettings()
    cold = AutoscalingSettings(min_replicas=0, max_replicas=1, downscale_delay_s=300,
                               downscale_to_zero_delay_s=600)
    return FamilySettings(autoscaling=cold, cold_start_deadline_s=600)


ENV_VARS = {
    "TESSERA_DATA_DIR": ("data_dir",),
    "TESSERA_MODELS_DIR": ("models_dir",),
    "TESSERA_DATABASE_URL": ("database", "url"),
    "TESSERA_S3_ENDPOINT": ("storage", "s3", "endpoint"),
    "TESSERA_S3_ACCESS_KEY": ("storage", "s3", "access_key"),
    "TESSERA_S3_SECRET_KEY": ("storage", "s3", "secret_key"),
    "TESSERA_S3_BUCKET": ("storage", "s3", "bucket"),
    "TESSERA_S3_SECURE": ("storage", "s3", "secure"),
    "TESSERA_S3_REGION": ("storage", "s3", "region"),
    "TESSERA_PUBLIC_BASE_URL": ("storage", "public_base_url"),
    "TESSERA_PUBLIC_URL": ("public_url",),
    "TESSERA_OTLP_ENDPOINT": ("tracing", "otlp_endpoint"),
    "TESSERA_ALLOW_PRIVATE_URLS": ("inputs", "allow_private_urls"),
    "TESSERA_WEBHOOK_SIGNING_KEY": ("webhooks", "signing_key"),
    "TESSERA_SAFETY_CHECKER": ("safety", "checker"),
}


def apply_env(raw: dict, environ: dict[str, str] | None = None) -> dict:
    """Overlay endpoint and secret variables onto a raw config dict (the env wins)."""
    environ = os.environ if environ is None else environ
    out = _deepcopy(raw)
    for var, path in ENV_VARS.items():
        if environ.get(var):
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = environ[var]
    return out


def load_config(args: dict | None = None, environ: dict[str, str] | None = None) -> TesseraConfig:
    """Validate args (a serve config's `args`, or {} for the embedded defaults) plus the env.

    The data dir is made absolute here so every replica, whatever its working directory,
    writes to the same place.
    """
    cfg = TesseraConfig.model_validate(apply_env(dict(args or {}), environ))
    data_dir = Path(cfg.data_dir).expanduser().resolve()
    models_dir = Path(cfg.models_dir).expanduser() if cfg.models_dir else data_dir / "models"
    return cfg.model_copy(update={"data_dir": str(data_dir),
                                  "models_dir": str(models_dir.resolve())})


def _deepcopy(d: dict) -> dict:
    return {k: _deepcopy(v) if isinstance(v, dict) else v for k, v in d.items()}
