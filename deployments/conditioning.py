"""ControlNets and reference images on a family replica: what turns a task's control and
reference images into the keywords of its pipeline call.

- ControlNets are loaded once (safetensors only) and kept, least recently used first out; a call
  with active ControlNets runs the family's ControlNet pipeline, made from the loaded base with
  `from_pipe` (the base's modules, shared). A ControlNet at scale 0 adds nothing and is not run,
  so a task whose ControlNets are all at 0 is the plain call, to the byte.
- Control images are prepared once per task at the output size (`preprocess`: OpenCV's Canny
  edges, or a transformers `depth-estimation` model's depth map) and kept by content hash, so a
  repeated control image is not prepared again.
- Reference images: FLUX.1 Redux's image tokens (its SigLIP encoder and embedder, run once per
  image and kept by content hash) go beside the prompt's tokens, each scaled; SDXL's IP-Adapter
  is loaded onto the base while reference tasks run and unloaded for the others, so a task
  without references runs the unchanged base.

The pipeline's own per-step work is untouched: a control image is VAE-encoded (FLUX, SD3,
Qwen-Image) or embedded (SDXL) once per call by diffusers, not per step.

Everything here runs in the pipeline thread; torch, diffusers, transformers and OpenCV are
imported inside functions.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from deployments.helpers import IP_ADAPTER_WEIGHTS, helper_path
from deployments.invariance import make_batch_invariant
from serve_app.core.errors import ControlNetUnreachableError
from serve_app.core.types import ControlRef, FamilySpec, GenerateParams, ReferenceRef

CANNY_THRESHOLDS = (100, 200)  # OpenCV's low and high hysteresis thresholds
PREPARED_CACHE = 64  # control images kept prepared, and reference embeddings
MAX_HELD_MODELS = 2  # depth models and Redux priors a replica keeps


class _Lru:
    """A small least-recently-used map; `on_evict` sees what leaves."""

    def __init__(self, capacity: int, on_evict: Callable[[Any, Any], None] | None = None):
        self.capacity = capacity
        self.on_evict = on_evict
        self._items: OrderedDict = OrderedDict()

    def get(self, key, make: Callable[[], Any]):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.capacity:
            old_key, old = self._items.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(old_key, old)
        return value

    def drop(self, doomed: Callable[[Any], bool]) -> None:
        """Forget every entry whose key is `doomed` (without `on_evict`)."""
        for key in [k for k in self._items if doomed(k)]:
            del self._items[key]


def active_controls(params: GenerateParams) -> list[ControlRef]:
    return [c for c in params.controlnets if c.active]


def active_references(params: GenerateParams) -> list[ReferenceRef]:
    return [r for r in params.reference_images if r.active]


def canny(image) -> Any:
    """OpenCV's Canny edges of the image, white on black, as RGB."""
    import cv2
    import numpy as np
    from PIL import Image

    edges = cv2.Canny(np.asarray(image.convert("L")), *CANNY_THRESHOLDS)
    return Image.fromarray(edges).convert("RGB")


class Conditioning:
    """One family replica's ControlNets, control images and reference models."""

    def __init__(self, spec: FamilySpec, data_dir: str, models_dir: Path, device: str, dtype,
                 batch_invariant: bool = True, max_controlnets: int = 2):
        self.spec = spec
        self.data_dir = data_dir
        self.models_dir = models_dir
        self.device = device
        self.dtype = dtype
        self.batch_invariant = batch_invariant
        self._pipes = _Lru(4)
        self._controlnets = _Lru(max_controlnets, on_evict=self._forget_pipes)
        self._prepared = _Lru(PREPARED_CACHE)
        self._depth = _Lru(MAX_HELD_MODELS)
        self._priors = _Lru(MAX_HELD_MODELS)
        self._tokens = _Lru(PREPARED_CACHE)
        self._ip_adapters: dict[int, str] = {}  # id(base) -> the IP-Adapter loaded on it

    # ------------------------------------------------------------------ batching

    def batch_key(self, params: GenerateParams) -> tuple:
        """What tasks must agree on to share a call: the same active ControlNets at the same
        settings (one ControlNet: each image has its own control image; two: one control
        image each for the whole call), and the same active reference images."""
        controls = active_controls(params)
        key: tuple = tuple((c.source.key, c.conditioning_scale, c.start, c.end, c.preprocess,
                            c.depth_model, c.control_mode) for c in controls)
        if len(controls) > 1:
            key += tuple(c.image_sha256 for c in controls)
        references = active_references(params)
        if references:
            key += (params.reference_model.key,
                    tuple((r.image_sha256, r.scale) for r in references))
        return key

    def runs_alone(self, params: GenerateParams) -> bool:
        """Whether the task must have a call of its own (see `ControlNetSpec.unseeded_encode`)."""
        spec = self.spec.controlnet
        return bool(spec and spec.unseeded_encode and active_controls(params))

    def seeded(self, group: list):
        """Around the call: torch's global generator seeded from the task's first seed where
        the ControlNet pipeline draws from it (and restored after), else nothing."""
        import contextlib

        import torch

        if not self.runs_alone(group[0].params):
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(
            devices=[torch.cuda.current_device()] if self.device == "cuda" else []))
        torch.manual_seed(group[0].params.seeds[0])
        return stack

    # ------------------------------------------------------------------ ControlNets

    def pipeline(self, base, plain, group: list) -> Any:
        """The pipeline the group runs: `plain` (the task's own), or the family's ControlNet
        pipeline over the base when it has active ControlNets."""
        controls = active_controls(group[0].params)
        if not controls:
            return plain
        import diffusers

        sources = tuple(c.source.key for c in controls)
        models = [self._controlnets.get(c.source.key, lambda c=c: self._load_controlnet(c))
                  for c in controls]

        def make():
            cls = getattr(diffusers, self.spec.controlnet.pipeline)
            multi = getattr(diffusers, self.spec.controlnet.multi_class)
            pipe = cls.from_pipe(base, controlnet=models[0] if len(models) == 1
                                 else multi(models))
            pipe.set_progress_bar_config(disable=True)
            if self.batch_invariant:
                make_batch_invariant(pipe)
            return pipe

        return self._pipes.get((id(base), sources), make)

    def _load_controlnet(self, ref: ControlRef):
        """The ControlNet's weights, safetensors only (a pickle-only one fails to load rather
        than being unpickled); weights that cannot be had fail the task clearly."""
        import diffusers

        path = helper_path(ref.source.base, self.data_dir, self.models_dir)
        classes = self.spec.controlnet.model_classes
        try:
            config = getattr(diffusers, classes[0]).load_config(path)
            name = (config.get("_class_name") if config.get("_class_name") in classes
                    else classes[0])
            model = getattr(diffusers, name).from_pretrained(path, torch_dtype=self.dtype,
                                                             use_safetensors=True)
        except OSError as exc:  # missing files, not cached with the Hub away, no safetensors
            raise ControlNetUnreachableError(
                f"ControlNet {ref.path} could not be loaded: {str(exc)[:300]}") from None
        return model.to(self.device).eval()

    def _forget_pipes(self, source_key, _model) -> None:
        """A ControlNet evicted: the pipelines built on it go too (they hold it)."""
        self._pipes.drop(lambda key: source_key in key[1])

    def control_kwargs(self, group: list, width: int, height: int) -> dict:
        """The ControlNet keywords of the call: the prepared control images (per image with one
        ControlNet, one per ControlNet with two) and each ControlNet's settings."""
        controls = active_controls(group[0].params)
        if not controls:
            return {}
        spec = self.spec.controlnet

        def prepared(job) -> list:  # the job's active ControlNets' images, prepared
            return [self.prepared(image, ref, width, height) for image, ref in
                    zip(job.controls, job.params.controlnets, strict=True) if ref.active]

        if len(controls) == 1:
            images = [prepared(job)[0] for job in group for _ in job.params.seeds]
        else:  # the group shares its control images (the batch key says so)
            images = prepared(group[0])

        def each(values: list):
            return values[0] if len(values) == 1 else values

        kwargs = {spec.image_kwarg: images,
                  "controlnet_conditioning_scale": each([c.conditioning_scale
                                                         for c in controls]),
                  "control_guidance_start": each([c.start for c in controls]),
                  "control_guidance_end": each([c.end for c in controls])}
        if spec.takes_mode and any(c.control_mode is not None for c in controls):
            kwargs["control_mode"] = each([c.control_mode for c in controls])
        return kwargs

    def prepared(self, image, ref: ControlRef, width: int, height: int):
        """The control image at the output size, made into edges or depth when asked; kept by
        its content hash, so a repeated image is prepared once."""
        key = (ref.image_sha256, ref.preprocess, ref.depth_model, width, height)

        def make():
            from PIL import Image

            sized = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
            if ref.preprocess == "canny":
                return canny(sized)
            if ref.preprocess == "depth":
                return self.depth(sized, ref.depth_model)
            return sized

        return self._prepared.get(key, make)

    def depth(self, image, model: str):
        """A depth map of the image (near is bright), from transformers' depth-estimation
        pipeline, as RGB at the image's size."""
        from PIL import Image

        def load():
            from transformers import pipeline

            return pipeline("depth-estimation",
                            model=helper_path(model, self.data_dir, self.models_dir),
                            device=self.device)

        estimator = self._depth.get(model, load)
        depth = estimator(image)["depth"]
        return depth.convert("RGB").resize(image.size, Image.Resampling.BICUBIC)

    # ------------------------------------------------------------------ reference images

    def activate_references(self, base, group: list) -> None:
        """SDXL's IP-Adapter on the base for a reference call (its scale set), off for any
        other call: an IP-Adapter left loaded changes every call of the base."""
        if self.spec.reference != "ip-adapter":
            return
        params = group[0].params
        references = active_references(params)
        wanted = params.reference_model.base if references else None
        loaded = self._ip_adapters.get(id(base))
        if loaded is not None and loaded != wanted:
            base.unload_ip_adapter()
            del self._ip_adapters[id(base)]
        if wanted is not None and loaded != wanted:
            path, subfolder, weights = ip_adapter_files(
                helper_path(wanted, self.data_dir, self.models_dir))
            base.load_ip_adapter(path, subfolder=subfolder, weight_name=weights,
                                 image_encoder_folder="image_encoder")
            base.to(self.device)
            if self.batch_invariant:
                make_batch_invariant(base)
            self._ip_adapters[id(base)] = wanted
        if references:
            base.set_ip_adapter_scale(references[0].scale)

    def reference_kwargs(self, base, group: list, prompt_kwargs: dict) -> dict:
        """The reference keywords of the call (the group shares its reference images): Redux's
        prompt embeddings (the prompt's tokens, then each image's, scaled), or the IP-Adapter's
        images."""
        first = group[0]
        references = active_references(first.params)
        if not references:
            return {}
        images = [image for image, ref in zip(first.references, first.params.reference_images,
                                              strict=True) if ref.active]
        if self.spec.reference == "ip-adapter":
            return {"ip_adapter_image": [images]}
        return self._redux(base, group, references, images, prompt_kwargs)

    def _redux(self, base, group: list, references: list[ReferenceRef], images: list,
               prompt_kwargs: dict) -> dict:
        import torch

        model = group[0].params.reference_model.base
        prior = self._priors.get(model, lambda: self._load_prior(model))
        device = base._execution_device
        tokens = [self._tokens.get((model, ref.image_sha256), lambda image=image: (
            prior.image_embedder(prior.encode_image(image, device, 1)).image_embeds))
                  * ref.scale for ref, image in zip(references, images, strict=True)]
        embeds, pooled = [], []
        for job in group:  # each prompt alone: its embeddings do not depend on the batch
            text, text_pooled, _ = base.encode_prompt(
                prompt=job.params.prompt, prompt_2=None, device=device,
                num_images_per_prompt=1, **prompt_kwargs)
            joined = torch.cat([text, *[t.to(text.dtype) for t in tokens]], dim=1)
            embeds += [joined] * len(job.params.seeds)
            pooled += [text_pooled] * len(job.params.seeds)
        return {"prompt": None, "prompt_embeds": torch.cat(embeds),
                "pooled_prompt_embeds": torch.cat(pooled)}

    def _load_prior(self, model: str):
        """FLUX.1 Redux's prior without text encoders (the base's encode the prompt)."""
        from diffusers import FluxPriorReduxPipeline

        prior = FluxPriorReduxPipeline.from_pretrained(
            helper_path(model, self.data_dir, self.models_dir), torch_dtype=self.dtype,
            use_safetensors=True, text_encoder=None, tokenizer=None, text_encoder_2=None,
            tokenizer_2=None)
        prior.to(self.device)
        prior.set_progress_bar_config(disable=True)
        return prior


def ip_adapter_files(path: str) -> tuple[str, str, str]:
    """(repository or directory, subfolder, weight file) of an IP-Adapter named as a directory
    holding `ip-adapter.safetensors`, or as `<repo or dir>/<subfolder>/<file>.safetensors`
    (h94/IP-Adapter's `sdxl_models/ip-adapter_sdxl.safetensors`)."""
    if not path.endswith(".safetensors"):
        return path, "", IP_ADAPTER_WEIGHTS
    head, weights = path.rsplit("/", 1)
    if Path(head).is_dir() and (Path(head) / weights).exists():
        return head, "", weights
    parts = head.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:]), weights
