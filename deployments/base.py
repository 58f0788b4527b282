"""What every model family shares.

A family is data (`FamilySpec`: which diffusers pipelines, which defaults) plus one Serve
deployment class deriving from `FamilyDeployment`. All families expose the same
`generate(GenerateParams) -> dict` and differ only in `SPEC` and, where needed, `load_pipeline`.
Nothing here branches on a family's name.

Concurrent `generate` calls meet in the replica's batch queue (`deployments.batcher`);
compatible tasks (same model, task, size, steps, guidance) share one pipeline call, each keeping
its own seeds, and the pipeline runs batch-invariant (`deployments.invariance`) so an image has
the same bytes alone or in a batch.

torch and diffusers are imported inside methods: the ingress imports this module for the specs
and should not pay for (or need) torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from deployments.batcher import Batcher
from deployments.invariance import invariant_execution, make_batch_invariant
from serve_app.metrics import m
from serve_app.telemetry import extract, setup_logging, setup_tracing, task_attributes, tracer

logger = logging.getLogger("tessera.family")

TaskKind = Literal["text-to-image", "image-to-image", "inpaint", "edit"]
OutputFormat = Literal["png", "jpeg", "webp"]
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


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


def tiny_parameters(real: ParameterSpec) -> ParameterSpec:
    """A tiny checkpoint's parameters: the real model's, with few steps and small images."""
    return real.model_copy(update={"num_inference_steps": 4, "width": 256, "height": 256,
                                   "max_side": 1024, "max_pixels": 1024 * 1024})


class GenerateParams(BaseModel):
    """One task as a family deployment sees it: already validated and defaulted."""

    task_id: str
    tenant: str
    model_id: str
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
    image_keys: list[str] = []
    mask_key: str | None = None
    created_at: float = 0.0
    trace_context: dict[str, str] = {}  # W3C carrier: this task's trace continues here


@dataclass(frozen=True)
class FamilySpec:
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


def quiet_libraries() -> None:
    """Progress bars from diffusers/transformers/hub flood replica logs with one line per step."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def pick_device(preference: str) -> tuple[str, Any]:
    import torch

    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def encode_image(image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
    elif fmt == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=92)
    else:
        image.save(buf, format="WEBP", quality=92)
    return buf.getvalue()


def output_key(tenant: str, task_id: str, created_at: float, index: int, fmt: str) -> str:
    day = time.strftime("%Y/%m/%d", time.gmtime(created_at or time.time()))
    ext = "jpg" if fmt == "jpeg" else fmt
    return f"{tenant}/{day}/{task_id}/{index}.{ext}"


@dataclass
class Job:
    """One task inside a batch: its parameters, its trace, its input images."""

    params: GenerateParams
    context: Any  # OpenTelemetry context of the task's tessera.generate span
    images: list = field(default_factory=list)
    mask: Any = None


@contextlib.contextmanager
def spans(name: str, jobs: list[Job], attributes: dict):
    """One span per task for work its batch shares: each task's trace stays whole."""
    with contextlib.ExitStack() as stack:
        for job in jobs:
            stack.enter_context(tracer().start_as_current_span(
                name, context=job.context, attributes=attributes))
        yield


def replica_placement() -> dict[str, str]:
    """Which replica and Ray node run this family: where a task ran, in its trace."""
    import ray

    return {"tessera.replica": serve.get_replica_context().replica_id.unique_id,
            "tessera.node": ray.get_runtime_context().get_node_id()}


class FamilyDeployment:
    """Base of every family's Serve deployment."""

    SPEC: FamilySpec

    def __init__(self, config: dict):
        from serve_app.config import TesseraConfig
        from serve_app.storage import make_store
        from serve_app.tasks import task_manager

        quiet_libraries()
        self.config = TesseraConfig.model_validate(config)
        setup_tracing(self.config.tracing, self.config.data_dir, self.SPEC.deployment_name)
        setup_logging()
        settings = self.config.families[self.SPEC.name]
        self.device, self.dtype = pick_device(self.config.device)
        if self.device == "cpu" and settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        self.store = make_store(self.config)
        self.tasks = task_manager(self.config.instance)
        self.placement = replica_placement()
        self._pipes: dict[tuple[str, str], Any] = {}
        self.max_batch_images = settings.max_batch_size
        # Invariant execution costs some speed; without batching nothing needs it.
        self.batch_invariant = settings.max_batch_size > 1
        self._batcher = Batcher(self._run_batch, settings.max_batch_size,
                                settings.batch_wait_timeout_s)

        async def _load(model_source: str):
            return await self.load_model(model_source)

        # The class-level decorator below makes Serve see multiplexing at build time; this
        # instance-level one carries the configured cache size.
        self.get_model = serve.multiplexed(
            max_num_models_per_replica=settings.max_models_per_replica)(_load)

    @serve.multiplexed(max_num_models_per_replica=1)
    async def get_model(self, model_source: str):  # replaced per instance in __init__
        return await self.load_model(model_source)

    async def load_model(self, model_source: str):
        return await asyncio.to_thread(self.load_pipeline, model_source)

    def load_pipeline(self, source: str):
        """Load the model's own pipeline class (from model_index.json) onto the device."""
        from diffusers import DiffusionPipeline

        from serve_app.validation import resolve_source

        started = time.perf_counter()
        path, transformer_weights = resolve_source(source, self.config.data_dir)
        pipe = DiffusionPipeline.from_pretrained(path, dtype=self.dtype)
        if transformer_weights:
            from safetensors.torch import load_file

            # strict: a fine-tune whose tensors do not match the base must fail the load
            pipe.transformer.load_state_dict(load_file(transformer_weights), strict=True)
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        if self.batch_invariant:
            make_batch_invariant(pipe)
        logger.info("loaded %s (%s) in %.2fs", source, type(pipe).__name__,
                    time.perf_counter() - started)
        return pipe

    def pipeline_for(self, base, task: str):
        """The pipeline of `task`, sharing the loaded components of `base`."""
        import diffusers

        wanted = self.SPEC.pipelines[task]
        if type(base).__name__ == wanted:
            return base
        key = (id(base), wanted)
        if key not in self._pipes:
            self._pipes[key] = getattr(diffusers, wanted).from_pipe(base)
        return self._pipes[key]

    def batch_key(self, params: GenerateParams) -> tuple:
        """Tasks with equal keys can share one pipeline call."""
        key: tuple = (params.task, params.width, params.height, params.num_inference_steps,
                      params.guidance_scale, params.strength, params.negative_prompt is not None,
                      params.mask_key is not None)
        if params.image_keys and (params.task == "edit" or self.SPEC.multi_image):
            # these pipelines take one (set of) input image(s) for the whole call
            key += (params.task_id,)
        if self.SPEC.single_prompt or self.SPEC.batch_by_prompt:
            key += (params.prompt, params.negative_prompt)
        return key

    def batch_groups(self, jobs: list[Job]) -> list[list[Job]]:
        """Jobs grouped by key, each group at most max_batch_size images (a bigger task alone)."""
        groups: dict[tuple, list[list[Job]]] = {}
        for job in jobs:
            chunks = groups.setdefault(self.batch_key(job.params), [[]])
            size = sum(len(j.params.seeds) for j in chunks[-1])
            if chunks[-1] and size + len(job.params.seeds) > self.max_batch_images:
                chunks.append([])
            chunks[-1].append(job)
        return [chunk for chunks in groups.values() for chunk in chunks]

    def call_kwargs(self, pipe, group: list[Job]) -> dict:
        """One pipeline call for a group of compatible jobs, keeping only the keywords this
        pipeline's __call__ takes. Everything per image is listed image by image."""
        import inspect

        import torch

        first = group[0].params

        def per_image(value: Callable[[Job], Any]) -> list:
            return [value(job) for job in group for _ in job.params.seeds]

        seeds = [seed for job in group for seed in job.params.seeds]
        # constants, or functions of the request (e.g. a target area derived from its size)
        kwargs: dict[str, Any] = {k: v(first) if callable(v) else v
                                  for k, v in self.SPEC.call_kwargs.items()}
        kwargs.update(
            prompt=per_image(lambda j: j.params.prompt),
            width=first.width,
            height=first.height,
            num_inference_steps=first.num_inference_steps,
            # One generator per image: an image's bytes depend on its seed alone.
            generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            output_type="pil",
        )
        if first.guidance_scale is not None and self.SPEC.guidance_kwarg:
            kwargs[self.SPEC.guidance_kwarg] = first.guidance_scale
        if first.negative_prompt:
            kwargs["negative_prompt"] = per_image(lambda j: j.params.negative_prompt)
        if self.SPEC.single_prompt:
            kwargs.update(prompt=first.prompt, num_images_per_prompt=len(seeds))
            if first.negative_prompt:
                kwargs["negative_prompt"] = first.negative_prompt
        inputs = group[0].images
        if inputs and first.task in ("image-to-image", "inpaint"):
            # one input per output: some pipelines take a lone image for a batch of n badly
            kwargs["image"] = per_image(lambda j: j.images[0])
        elif inputs:
            kwargs["image"] = inputs if self.SPEC.multi_image else inputs[0]
        if group[0].mask is not None:
            kwargs["mask_image"] = per_image(lambda j: j.mask)
        if first.strength is not None:
            kwargs["strength"] = first.strength
        accepted = inspect.signature(pipe.__call__).parameters
        return {k: v for k, v in kwargs.items() if k in accepted}

    async def load_inputs(self, job: Job) -> None:
        from PIL import Image

        async def load(key: str, mode: str):
            data = await self.store.get_async(key)
            return Image.open(io.BytesIO(data)).convert(mode)

        job.images = [await load(k, "RGB") for k in job.params.image_keys]
        job.mask = await load(job.params.mask_key, "L") if job.params.mask_key else None

    async def generate(self, params: GenerateParams | dict) -> dict:
        from opentelemetry import context as otel_context

        params = GenerateParams.model_validate(params)
        attrs = task_attributes(params.task_id, params.tenant, params.model_id, self.SPEC.name,
                                **{"tessera.batch_size": len(params.seeds),
                                   "tessera.task_kind": params.task, **self.placement})
        with tracer().start_as_current_span("tessera.generate", context=extract(
                params.trace_context), attributes=attrs):
            # Concurrent calls for the same model meet in the replica's batch queue.
            job, images, timings = await self._batcher.submit(
                serve.get_multiplexed_model_id(), (params, otel_context.get_current()))
            # Encoding and the store write run here, per task, so the device moves on to the
            # next batch meanwhile.
            return await self._store_outputs(job, images, timings)

    async def _run_batch(self, source: str, items: list[tuple[GenerateParams, Any]]) -> list:
        """One batch, all for the model `source`: load it, then one pipeline call per group of
        compatible tasks. Returns each task's (job, images, timings), or the exception of the
        step that broke it: a failure fails only the tasks it touched."""
        jobs = [Job(params, context) for params, context in items]
        outcomes: dict[int, Any] = {}
        t0 = time.perf_counter()
        with spans("model.load", jobs, {"tessera.source": source}):
            try:
                base = await self.get_model(source)
            except Exception as exc:
                return [exc] * len(jobs)
            for job in jobs:
                try:
                    await self.load_inputs(job)
                except Exception as exc:
                    outcomes[id(job)] = exc
        load_ms = (time.perf_counter() - t0) * 1000
        for group in self.batch_groups([j for j in jobs if id(j) not in outcomes]):
            try:
                results = await self._run_group(base, group, load_ms)
            except Exception as exc:
                results = [exc] * len(group)
            outcomes.update(zip(map(id, group), results, strict=True))
        return [outcomes[id(job)] for job in jobs]

    async def _run_group(self, base, group: list[Job], load_ms: float) -> list:
        family = {"family": self.SPEC.name}
        first = group[0].params
        images_in_call = sum(len(j.params.seeds) for j in group)
        # The batch queue runs one batch at a time: one pipeline call per replica, since
        # concurrent calls would only fight over the device.
        for job in group:
            self.tasks.mark_started.remote(job.params.task_id)
        t1 = time.perf_counter()
        with spans("pipeline.denoise", group, {
                "tessera.batch_size": images_in_call,
                "tessera.batch_tasks": len(group),
                "tessera.steps": first.num_inference_steps,
                "tessera.size": f"{first.width}x{first.height}"}):
            # Denoising is CPU/GPU bound: keep it off the replica's event loop.
            images = await asyncio.to_thread(self._run_pipeline, base, group)
        inference_ms = (time.perf_counter() - t1) * 1000
        m().generation.observe(inference_ms / 1000, tags=family)
        m().batch_size.observe(images_in_call, tags=family)
        timings = {"load": round(load_ms, 2), "inference": round(inference_ms, 2)}
        outcomes, offset = [], 0
        for job in group:  # each task's images, for its own caller to encode and store
            outcomes.append((job, images[offset:offset + len(job.params.seeds)], timings))
            offset += len(job.params.seeds)
        return outcomes

    async def _store_outputs(self, job: Job, images: list, timings: dict) -> dict:
        params = job.params
        t2 = time.perf_counter()
        with spans("image.encode", [job], {"tessera.format": params.output_format}):
            encoded = await asyncio.to_thread(
                lambda: [encode_image(im, params.output_format) for im in images])
        encode_ms = (time.perf_counter() - t2) * 1000
        t3 = time.perf_counter()
        outputs = []
        with spans("storage.write", [job], {"tessera.objects": len(encoded)}):
            for index, (data, seed) in enumerate(zip(encoded, params.seeds, strict=True)):
                key = output_key(params.tenant, params.task_id, params.created_at, index,
                                 params.output_format)
                await self.store.put_async(key, data, CONTENT_TYPES[params.output_format])
                outputs.append({"key": key, "seed": seed, "bytes": len(data),
                                "content_type": CONTENT_TYPES[params.output_format]})
        storage_ms = (time.perf_counter() - t3) * 1000
        # Some pipelines choose their own output size (LongCat edits at ~1 MP): report what
        # was made, which is also what usage bills.
        width, height = images[0].size
        return {
            "images": outputs,
            "width": width,
            "height": height,
            "timings_ms": {**timings, "encode": round(encode_ms, 2),
                           "storage": round(storage_ms, 2)},
        }

    def _run_pipeline(self, base, group: list[Job]):
        import torch

        pipe = self.pipeline_for(base, group[0].params.task)
        invariant = (invariant_execution(self.device) if self.batch_invariant
                     else contextlib.nullcontext())
        with torch.inference_mode(), invariant:
            return pipe(**self.call_kwargs(pipe, group)).images

    async def check_health(self):
        return None
