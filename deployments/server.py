"""The family server: one Serve deployment class, bound once per family by the builder.

`generate` is a streaming call. For each task it yields `Started` when the task's pipeline call
begins (which may be shared with other tasks) and `GenerateResult` once its images are stored;
the task actor consumes the stream (`handle.options(stream=True)`) and alone writes task state.
The server never calls back into the task actor.

Concurrent calls for the same model meet in the replica's batch queue (`deployments.batching`);
compatible tasks share one pipeline call (`deployments.calls`), run batch-invariant so an image
has the same bytes alone or in a batch. Models are multiplexed (LRU, `max_models_per_replica`).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any, AsyncIterator

from opentelemetry import trace
from ray import serve

from deployments.adapters.cache import AdapterCache, refusal
from deployments.batching import Batcher, run_groups
from deployments.calls import Job, PipelineCalls
from deployments.conditioning import Conditioning
from deployments.loading import load_pipeline, pick_device, quiet_libraries
from deployments.outputs import spans, store_outputs
from deployments.previews import due, preview_uri
from deployments.registry import FAMILIES
from deployments.safety import SafetyChecker, checker_source
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import TaskCanceled
from serve_app.core.metrics import m
from serve_app.core.storage import make_store
from serve_app.core.telemetry import (
    extract,
    setup_logging,
    setup_tracing,
    task_attributes,
    tracer,
)
from serve_app.core.types import (
    GenerateEvent,
    GenerateRequest,
    ModelSource,
    SafetyReport,
    Started,
    Step,
)

logger = logging.getLogger("tessera.family")


def replica_placement() -> dict[str, str]:
    """Which replica and Ray node run this family: where a task ran, in its trace."""
    import ray

    return {"tessera.replica": serve.get_replica_context().replica_id.unique_id,
            "tessera.node": ray.get_runtime_context().get_node_id()}


@serve.deployment
class FamilyServer:
    def __init__(self, config: dict, family: str):
        quiet_libraries()
        self.config = TesseraConfig.model_validate(config)
        self.spec = FAMILIES[family]
        setup_tracing(self.config.tracing, self.config.data_dir, self.spec.deployment_name)
        setup_logging()
        settings = self.config.families[family]
        self.device, self.dtype = pick_device(self.config.device)
        if self.device == "cpu" and settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        self.store = make_store(self.config)
        self.placement = replica_placement()
        opts = settings.optimization.resolved(self.device)
        # Invariant execution costs some speed; without batching nothing needs it.
        invariant = settings.max_batch_size > 1 and opts.batch_invariant
        self.adapters = AdapterCache(
            settings.lora_cpu_cache_bytes, settings.lora_device_cache_bytes,
            hotswap_rank=settings.lora_hotswap_rank if opts.compile else None,
            batch_invariant=invariant, refused=refusal(opts))
        conditioning = Conditioning(
            self.spec, self.config.data_dir, self.config.models_path, self.device, self.dtype,
            batch_invariant=invariant,
            max_controlnets=self.config.control.max_controlnets_per_replica)
        self.calls = PipelineCalls(self.spec, settings.max_batch_size, self.device,
                                   batch_invariant=invariant, opts=opts, adapters=self.adapters,
                                   conditioning=conditioning)
        # every output image passes it before it is stored (the start checked it loads)
        safety = self.config.safety
        self.checker = SafetyChecker(
            safety, checker_source(safety, self.config.data_dir, self.config.models_path),
            self.device, self.dtype) if safety.checker else None
        self._preloaded: dict[str, object] = {}
        self._batcher = Batcher(self._run_batch, settings.max_batch_size,
                                settings.batch_wait_timeout_s)

        async def _load(key: str):
            return await self.load_model(key)

        # The class-level decorator below makes Serve see multiplexing at build time; this
        # instance-level one carries the configured cache size.
        self.get_model = serve.multiplexed(
            max_num_models_per_replica=settings.max_models_per_replica)(_load)
        # Serve marks the replica healthy once __init__ returns: the first user of a preloaded
        # model pays neither its load nor its compilation.
        for source in settings.preload_models:
            self._preloaded[source.key] = self._load_sync(source)

    @serve.multiplexed(max_num_models_per_replica=1)
    async def get_model(self, key: str):  # replaced per instance in __init__
        return await self.load_model(key)

    async def load_model(self, key: str):
        """The model whose multiplexed id is `key` (a `ModelSource.key`)."""
        if key in self._preloaded:
            return self._preloaded.pop(key)
        return await asyncio.to_thread(self._load_sync, ModelSource.from_key(key))

    def _load_sync(self, source: ModelSource):
        t0 = time.perf_counter()
        pipe = load_pipeline(source, self.config.data_dir, self.device, self.dtype,
                             self.calls.batch_invariant, self.calls.opts,
                             allow_pickle=self.config.allow_pickle_weights,
                             hotswap_rank=self.adapters.hotswap_rank, spec=self.spec)
        if self.calls.opts.warmup:
            warm = self.calls.warm_up(pipe, source)
            logger.info("cold start of %s: %.1f s (warm-up call %.1f s)", source,
                        time.perf_counter() - t0, warm)
        m().cold_start.observe(time.perf_counter() - t0, tags={"family": self.spec.name})
        return pipe

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateEvent]:
        attrs = task_attributes(request.task_id, request.tenant, request.model, self.spec.name,
                                **{"tessera.batch_size": len(request.params.seeds),
                                   "tessera.task_kind": request.params.task, **self.placement})
        # a span object, not a current-context one: the context must not be attached across
        # the generator's yields
        span = tracer().start_span("tessera.generate", context=extract(request.trace_context),
                                   attributes=attrs)
        job = Job(request, trace.set_span_in_context(span))
        # Concurrent calls for the same model meet in the replica's batch queue.
        outcome = asyncio.ensure_future(
            self._batcher.submit(serve.get_multiplexed_model_id(), job))
        try:
            started = asyncio.ensure_future(job.started.wait())
            try:
                await asyncio.wait({outcome, started}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                started.cancel()
            if job.started.is_set():
                yield Started(batch_tasks=job.batch_tasks)
            while not outcome.done():  # each denoising step, until the call is over
                step = asyncio.ensure_future(job.steps.get())
                await asyncio.wait({outcome, step}, return_when=asyncio.FIRST_COMPLETED)
                if step.done():
                    yield step.result()
                else:
                    step.cancel()
            images, timings, flags, safety = await outcome
            # Encoding and the store write run here, per task, so the device moves on to the
            # next batch meanwhile.
            yield await store_outputs(self.store, request, job.context, images, timings, flags,
                                      safety)
        except (asyncio.CancelledError, GeneratorExit):
            # The task was cancelled (its stream with it): out of the batch queue if it had
            # not started; in a running call, the call stops once no task in it is left.
            job.canceled = True
            outcome.cancel()
            span.set_attribute("tessera.canceled", True)
            raise
        finally:
            span.end()

    async def _run_batch(self, key: str, jobs: list[Job]) -> list:
        """One batch, all for the model whose multiplexed id is `key`: load it, then one
        pipeline call per group of compatible tasks. Returns each task's (images, timings), or
        the exception of the step that broke it: a failure fails only the tasks it touched (a
        shared call that fails is tried again a task at a time)."""
        outcomes: dict[int, Any] = {}
        t0 = time.perf_counter()
        with spans("model.load", [j.context for j in jobs], {"tessera.source": key}):
            try:
                base = await self.get_model(key)
            except Exception as exc:
                return [exc] * len(jobs)
            for job in jobs:  # a bad input or adapter fails its own task only
                try:
                    await self._load_inputs(job)
                    await self._load_adapters(base, job)
                except Exception as exc:
                    outcomes[id(job)] = exc
        load_ms = (time.perf_counter() - t0) * 1000
        groups = self.calls.batch_groups([j for j in jobs if id(j) not in outcomes])
        outcomes.update(await run_groups(
            groups, lambda group: self._run_group(base, group, load_ms),
            keep_together=lambda exc: isinstance(exc, TaskCanceled)))
        return [outcomes[id(job)] for job in jobs]

    async def _run_group(self, base, group: list[Job], load_ms: float) -> list:
        family = {"family": self.spec.name}
        first = group[0].params
        images_in_call = sum(len(j.params.seeds) for j in group)
        for job in group:  # the tasks' streams say Started now
            job.batch_tasks = len(group)
            job.started.set()
        t1 = time.perf_counter()
        with spans("pipeline.denoise", [j.context for j in group], {
                "tessera.batch_size": images_in_call,
                "tessera.batch_tasks": len(group),
                "tessera.steps": first.num_inference_steps,
                "tessera.size": f"{first.width}x{first.height}"}):
            # Denoising is CPU/GPU bound: keep it off the replica's event loop. The batch
            # queue runs one batch at a time, so calls never fight over the device.
            loop = asyncio.get_running_loop()

            def on_step(pipe, step: int, total: int, latents) -> None:  # the pipeline's thread
                if all(job.canceled for job in group):
                    raise TaskCanceled(f"every task of the call was cancelled at step {step}")
                index = 0
                for job in group:
                    preview = None
                    if job.request.preview and latents is not None and due(step, total):
                        preview = preview_uri(self.spec, pipe, latents, index, first.width,
                                              first.height)
                    index += len(job.params.seeds)
                    loop.call_soon_threadsafe(job.steps.put_nowait, Step(
                        step=step, total_steps=total, preview=preview))

            images = await asyncio.to_thread(self.calls.run, base, group, on_step)
        inference_ms = (time.perf_counter() - t1) * 1000
        m().generation.observe(inference_ms / 1000, tags=family)
        m().batch_size.observe(images_in_call, tags=family)
        timings = {"load": round(load_ms, 2), "inference": round(inference_ms, 2)}
        flags: list[bool | None] = [None] * len(images)
        if any(job.params.safety_check for job in group):
            t2 = time.perf_counter()
            with spans("safety.check", [j.context for j in group], {
                    "tessera.checker": self.config.safety.checker or ""}):
                images, flags = await asyncio.to_thread(self._checked, group, images)
            timings["safety"] = round((time.perf_counter() - t2) * 1000, 2)
        outcomes, offset = [], 0
        for job in group:  # each task's images, for its own caller to encode and store
            end = offset + len(job.params.seeds)
            safety = (SafetyReport(checker=self.config.safety.checker,
                                   action=self.config.safety.action,
                                   flagged=sum(bool(f) for f in flags[offset:end]))
                      if job.params.safety_check else None)
            outcomes.append((images[offset:end], timings, flags[offset:end], safety))
            offset = end
        return outcomes

    def _checked(self, group: list[Job], images: list) -> tuple[list, list[bool | None]]:
        """The call's images once the checker has looked at those of the tasks that asked (one
        batch), with the action applied, and each image's verdict (None: not checked). Before
        any is encoded: a flagged original is never stored unless the action is `flag`."""
        if self.checker is None:  # never a silent pass
            raise RuntimeError("a task asked for the safety checker, which this replica has "
                               "not loaded")
        checked, offset = [], 0
        for job in group:
            if job.params.safety_check:
                checked += range(offset, offset + len(job.params.seeds))
            offset += len(job.params.seeds)
        verdict = self.checker.verdict([images[i] for i in checked])
        images, flags = list(images), [None] * len(images)
        for i, flagged in zip(checked, verdict.flagged, strict=True):
            images[i] = self.checker.apply(images[i], flagged)
            flags[i] = flagged
        if any(verdict.flagged):
            m().safety_flagged.inc(sum(verdict.flagged), tags={"family": self.spec.name})
        return images, flags

    async def _load_inputs(self, job: Job) -> None:
        from PIL import Image

        async def load(key: str, mode: str):
            data = await self.store.get_async(key)
            return await asyncio.to_thread(lambda: Image.open(io.BytesIO(data)).convert(mode))

        params = job.params
        job.images = [await load(k, "RGB") for k in params.image_keys]
        job.mask = await load(params.mask_key, "L") if params.mask_key else None
        # inactive ones (scale 0) are not run: not read either
        job.controls = [await load(c.image_key, "RGB") if c.active else None
                        for c in params.controlnets]
        job.references = [await load(r.image_key, "RGB") if r.active else None
                          for r in params.reference_images]

    async def _load_adapters(self, base, job: Job) -> None:
        """Each adapter the replica does not hold yet: its staged bytes from the store, checked
        and fitted to the base (a thread: hashing and checking are CPU work)."""
        for i, ref in enumerate(job.params.loras):
            if not self.adapters.has(ref.sha256):
                data = await self.store.get_async(ref.key)
                await asyncio.to_thread(self.adapters.prepare, base, ref, data,
                                        f"loras[{i}].path", self.config.loras.max_rank)

    async def check_health(self):
        return None
