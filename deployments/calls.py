"""Building pipeline calls: which tasks may share one, and the keyword arguments of each.

Tasks that agree on task kind, size, steps, guidance, strength, their LoRA adapters (the same
adapters at the same scales) and whether they carry a negative prompt or a mask share one call
of at most `max_batch_size` images; prompts, negative prompts, input images and seeds stay per
task (one generator per image). Keywords a pipeline's
`__call__` does not take are dropped, so families differ only in their `FamilySpec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from deployments.adapters.cache import AdapterCache
from deployments.conditioning import Conditioning
from deployments.invariance import invariant_execution
from deployments.loading import PipelineCache, source_parameters
from deployments.optimize import set_vae_tiling, timed
from deployments.upscale import upscaled
from serve_app.core.config import OptimizationSettings
from serve_app.core.types import FamilySpec, GenerateParams, GenerateRequest, ModelSource


@dataclass
class Job:
    """One task inside a batch: its request, its trace, its input images, whether it started."""

    request: GenerateRequest
    context: Any = None  # OpenTelemetry context of the task's tessera.generate span
    images: list = field(default_factory=list)
    mask: Any = None
    # control and reference images, one per entry (None for one at scale 0: not run)
    controls: list = field(default_factory=list)
    references: list = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    batch_tasks: int = 1
    steps: asyncio.Queue = field(default_factory=asyncio.Queue)  # Step events, as they happen
    canceled: bool = False  # its caller went away: its images are not wanted any more

    @property
    def params(self) -> GenerateParams:
        return self.request.params

    @property
    def task_id(self) -> str:
        return self.request.task_id


class PipelineCalls:
    """One family's grouping and call building (the server's, and the tests' without Serve)."""

    def __init__(self, spec: FamilySpec, max_batch_images: int, device: str = "cpu",
                 batch_invariant: bool = True, opts: OptimizationSettings | None = None,
                 adapters: AdapterCache | None = None,
                 conditioning: Conditioning | None = None):
        self.spec = spec
        self.max_batch_images = max_batch_images
        self.device = device
        self.batch_invariant = batch_invariant
        self.opts = (opts or OptimizationSettings()).resolved(device)
        self.pipes = PipelineCache(spec)
        self.adapters = adapters or AdapterCache(0, 0, batch_invariant=batch_invariant)
        self.conditioning = conditioning

    def batch_key(self, job: Job) -> tuple:
        """Jobs with equal keys can share one pipeline call."""
        p = job.params
        key: tuple = (p.task, p.width, p.height, p.num_inference_steps, p.guidance_scale,
                      p.strength, p.negative_prompt is not None, p.mask_key is not None,
                      tuple((a.sha256, a.scale) for a in p.loras))
        if p.image_keys and (p.task in ("edit", "upscale") or self.spec.multi_image):
            # these pipelines take one (set of) input image(s) for the whole call
            key += (job.task_id,)
        if self.conditioning is not None:
            key += self.conditioning.batch_key(p)
            if self.conditioning.runs_alone(p):
                key += (job.task_id,)
        if self.spec.single_prompt or self.spec.batch_by_prompt:
            key += (p.prompt, p.negative_prompt)
        return key

    def batch_groups(self, jobs: list[Job]) -> list[list[Job]]:
        """Jobs grouped by key, each group at most max_batch_size images (a bigger task alone)."""
        groups: dict[tuple, list[list[Job]]] = {}
        for job in jobs:
            chunks = groups.setdefault(self.batch_key(job), [[]])
            size = sum(len(j.params.seeds) for j in chunks[-1])
            if chunks[-1] and size + len(job.params.seeds) > self.max_batch_images:
                chunks.append([])
            chunks[-1].append(job)
        return [chunk for chunks in groups.values() for chunk in chunks]

    def call_kwargs(self, pipe, group: list[Job], base=None) -> dict:
        """One pipeline call for a group of compatible jobs, keeping only the keywords this
        pipeline's __call__ takes. Everything per image is listed image by image; control and
        reference images come in through the replica's `Conditioning` (which needs the
        loaded `base`)."""
        import torch

        first = group[0].params

        def per_image(value: Callable[[Job], Any]) -> list:
            return [value(job) for job in group for _ in job.params.seeds]

        seeds = [seed for job in group for seed in job.params.seeds]
        # constants, or functions of the request (e.g. a target area derived from its size)
        kwargs: dict[str, Any] = {k: v(first) if callable(v) else v
                                  for k, v in self.spec.call_kwargs.items()}
        kwargs.update(
            prompt=per_image(lambda j: j.params.prompt),
            width=first.width,
            height=first.height,
            num_inference_steps=first.num_inference_steps,
            # One generator per image: an image's bytes depend on its seed alone.
            generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            # tensors: the 8-bit conversion runs on the device (see pil_images)
            output_type="pt",
        )
        if first.guidance_scale is not None and self.spec.guidance_kwarg:
            kwargs[self.spec.guidance_kwarg] = first.guidance_scale
        if first.negative_prompt:
            kwargs["negative_prompt"] = per_image(lambda j: j.params.negative_prompt)
        if self.spec.single_prompt:
            kwargs.update(prompt=first.prompt, num_images_per_prompt=len(seeds))
            if first.negative_prompt:
                kwargs["negative_prompt"] = first.negative_prompt
        inputs = group[0].images
        if inputs and first.task in ("image-to-image", "inpaint"):
            # one input per output: some pipelines take a lone image for a batch of n badly
            kwargs["image"] = per_image(lambda j: j.images[0])
        elif inputs:
            kwargs["image"] = inputs if self.spec.multi_image else inputs[0]
        if group[0].mask is not None:
            kwargs["mask_image"] = per_image(lambda j: j.mask)
        if first.strength is not None:
            kwargs["strength"] = first.strength
        if self.conditioning is not None:
            kwargs.update(self.conditioning.control_kwargs(group, first.width, first.height))
            kwargs.update(self.conditioning.reference_kwargs(
                base, group, {k: v for k, v in kwargs.items() if k == "max_sequence_length"}))
        accepted = inspect.signature(pipe.__call__).parameters
        return {k: v for k, v in kwargs.items() if k in accepted}

    def run(self, base, group: list[Job],
            on_step: Callable[[Any, int, int, Any], None] | None = None) -> list:
        """The group's pipeline call (blocking): its images, task by task in order.
        `on_step(pipe, step, total_steps, latents)` is called after each denoising step; what
        it raises ends the call there."""
        import torch

        first = group[0].params
        if first.task == "upscale":  # an upscaler family's one task: the model as loaded
            with torch.inference_mode():
                return [self.upscale(base, job, on_step) for job in group]
        pipe = self.pipes.pipeline_for(base, first.task)
        invariant = (invariant_execution(self.device) if self.batch_invariant
                     else contextlib.nullcontext())
        # on the base: the task's pipeline shares its modules (from_pipe)
        self.adapters.activate(base, first.loras)
        if self.conditioning is not None:
            pipe = self.conditioning.pipeline(base, pipe, group)
            self.conditioning.activate_references(base, group)
        set_vae_tiling(pipe, first.width * first.height, self.opts.vae_tiling_min_pixels)
        seeded = (self.conditioning.seeded(group) if self.conditioning is not None
                  else contextlib.nullcontext())
        with torch.inference_mode(), invariant, seeded:
            # inside: preparing control and reference images runs their models
            kwargs = self.call_kwargs(pipe, group, base)
            if on_step is not None:
                kwargs.update(step_callback(pipe, lambda *a: on_step(pipe, *a),
                                            first.num_inference_steps))
            return pil_images(pipe(**kwargs).images)

    def upscale(self, pipe, job: Job, on_step: Callable | None = None):
        """An upscale task's one image, tile by tile (`deployments.upscale`); each batch of
        tiles is reported as a step. A diffusion upscaler's tiles each get their own generator,
        seeded from the task's seed and the tile's place."""
        import torch

        p = job.params
        accepted = inspect.signature(pipe.__call__).parameters
        constants = {k: v(p) if callable(v) else v for k, v in self.spec.call_kwargs.items()}
        done = [0]

        def run_tiles(tiles: list) -> list:
            kwargs = {**constants, "image": tiles, "prompt": [p.prompt] * len(tiles),
                      "num_inference_steps": p.num_inference_steps, "output_type": "pt",
                      "generator": [torch.Generator("cpu").manual_seed(p.seeds[0] + done[0] + i)
                                    for i in range(len(tiles))]}
            if p.guidance_scale is not None and self.spec.guidance_kwarg:
                kwargs[self.spec.guidance_kwarg] = p.guidance_scale
            if p.negative_prompt:
                kwargs["negative_prompt"] = [p.negative_prompt] * len(tiles)
            done[0] += len(tiles)
            return pil_images(pipe(**{k: v for k, v in kwargs.items() if k in accepted}).images)

        def on_tile(finished: int, total: int) -> None:
            if on_step is not None:
                on_step(pipe, finished, total, None)

        return upscaled(job.images[0], p.upscale, run_tiles, tile=self.spec.upscale_tile,
                        on_tile=on_tile)


    def warm_up(self, base, source: ModelSource, steps: int = 2) -> float:
        """One short text-to-image call at the model's default size, so compilation and kernel
        autotuning happen now rather than in a user's first request; its seconds."""
        p = source_parameters(self.spec, source)
        params = GenerateParams(prompt="warm-up", width=p.width, height=p.height,
                                num_inference_steps=min(steps, p.num_inference_steps),
                                guidance_scale=p.guidance_scale, seeds=[0])
        job = Job(GenerateRequest(task_id="warm-up", tenant="-", model=str(source), created_at=0.0,
                                  params=params))
        _, seconds = timed(self.run, base, [job])
        return seconds


def pil_images(images) -> list:
    """A pipeline's "pt" output (values in [0, 1], channels first) as PIL images, converted to
    8 bits where the tensors are: on a GPU that is a few microseconds instead of the ~15 ms per
    1024² image that diffusers' "pil" output spends on the CPU. The arithmetic is diffusers' own
    (float32 times 255, rounded half to even), so the bytes are the same on either device."""
    import torch
    from PIL import Image

    if not isinstance(images, torch.Tensor) and not all(
            isinstance(i, torch.Tensor) for i in images):
        return list(images)  # a pipeline that ignores output_type: PIL already
    batch = images if isinstance(images, torch.Tensor) else torch.stack(list(images))
    if batch.ndim == 3:
        batch = batch.unsqueeze(0)
    pixels = (batch.float() * 255).round().clamp(0, 255).to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]


def step_callback(pipe, on_step: Callable[[int, int, Any], None], asked_steps: int) -> dict:
    """The keyword arguments that make `pipe` report each finished denoising step: diffusers'
    `callback_on_step_end`, or the older `callback` (PixArt-Sigma); none if it has neither. The
    total is the steps the loop really runs (img2img runs steps x strength)."""
    accepted = inspect.signature(pipe.__call__).parameters

    def total() -> int:
        return getattr(pipe, "_num_timesteps", None) or asked_steps

    if "callback_on_step_end" in accepted:
        def on_step_end(_pipe, i, _t, callback_kwargs):
            on_step(i + 1, total(), callback_kwargs.get("latents"))
            return callback_kwargs  # unchanged: the latents go on as they are

        return {"callback_on_step_end": on_step_end}
    if "callback" in accepted:
        return {"callback": lambda i, _t, latents: on_step(i + 1, total(), latents),
                "callback_steps": 1}
    return {}
