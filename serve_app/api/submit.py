"""The one submit path: every dialect's generation or edit becomes a `Task` here and goes to
the task actor; with a wait, the same call answers once the task has ended."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field

from opentelemetry import trace

from deployments.adapters.stage import AdapterStager, model_adapter
from deployments.registry import FAMILIES
from serve_app.api.clients import TaskClient
from serve_app.api.conditioning import ConditioningStager
from serve_app.api.edit_inputs import InputLoader
from serve_app.api.holds import WAITS, TenantHolds
from serve_app.api.resolve import ModelResolver
from serve_app.core import netguard, telemetry
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import InvalidRequestError, UnsupportedTaskError, WebhookURLError
from serve_app.core.models import ModelRecord
from serve_app.core.rules import route_edit
from serve_app.core.tasks import Origin, Task
from serve_app.core.telemetry import inject, task_attributes
from serve_app.core.types import AdapterRef, GenerateParams
from serve_app.wire.schema import EditRequest, GenerationRequest, TaskCreated, UpscaleRequest

# the field each dialect turns the safety checker off with: what a refusal names
SAFETY_FIELDS = {None: "safety_checker", "replicate": "disable_safety_checker",
                 "fal": "enable_safety_checker"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class RequestOptions:
    """What a request's headers and route say about its task, parsed once by the API's
    dependencies: `Cancel-After`, `Idempotency-Key`, `Prefer: wait`, and where links point."""

    base_url: str
    path: str = ""
    cancel_after_s: float | None = None
    idempotency_key: str | None = None
    wait_s: int | None = None


@dataclass
class TaskOptions:
    """How a task is run and followed, beside its pipeline parameters."""

    cancel_after_s: float | None = None
    preview: bool = False
    webhook: str | None = None
    webhook_events: tuple[str, ...] = ("completed",)
    idempotency_key: str | None = None
    body_hash: str | None = None
    file_prefix: str = ""  # output file names start with it
    metadata: dict[str, str] = field(default_factory=dict)  # the client's labels (batch_id)
    origin: Origin | None = None  # the compatibility dialect that asked, if any


@dataclass
class Submitted:
    """A submission's outcome: what its 202 says, and the task as the task actor answered it:
    queued, or, when the submit waited (`wait_s`), ended or as it was when the wait ran out."""

    created: TaskCreated
    task: Task
    started: float  # time.monotonic() when it was sent: the synchronous dialects' deadline
    wait_s: int | None = None

    @property
    def task_id(self) -> str:
        return self.created.task_id


class Submitter:
    def __init__(self, config: TesseraConfig, resolver: ModelResolver, inputs: InputLoader,
                 adapters: AdapterStager, conditioning: ConditioningStager, tasks: TaskClient,
                 holds: TenantHolds):
        self.config = config
        self.resolver = resolver
        self.inputs = inputs
        self.adapters = adapters
        self.conditioning = conditioning
        self.tasks = tasks
        self.holds = holds

    async def generation(self, tenant: str, body: GenerationRequest, opts: RequestOptions,
                         file_prefix: str = "", metadata: dict | None = None,
                         wait_s: int | None = None, origin: Origin | None = None
                         ) -> Submitted:
        """Every dialect's text-to-image request, once it is a `GenerationRequest`; with
        wait_s, the answer comes once the task ends or after wait_s seconds."""
        model = await self.resolver.resolve(tenant, body.model)
        tasks = FAMILIES[model.family].tasks
        if "text-to-image" not in tasks:
            route = "upscale" if "upscale" in tasks else "edits"
            raise UnsupportedTaskError(f"{model.id} does only {tasks}: call /v1/images/{route}",
                                       param="model")
        warnings: list[str] = []
        checked = self.safety_check(tenant, body, origin)
        loras = await self.loras(tenant, model, body)
        # refused for its options (webhook, idempotency key) before any input image is stored
        options = await self.options(body, opts, checked, warnings)
        options.file_prefix, options.metadata = file_prefix, metadata or {}
        options.origin = origin
        task_id, now = new_id("task"), time.time()
        controls = await self.conditioning.controlnets(tenant, model, body, task_id)
        references, reference_model = await self.conditioning.references(tenant, model, body,
                                                                         task_id)
        params = body.to_generate_params(model.parameters, warnings, loras=loras,
                                         safety_check=checked, controlnets=controls,
                                         reference_images=references,
                                         reference_model=reference_model)
        return await self.submit(tenant, model, task_id, now, params, body.response_format,
                                 warnings, options, opts.base_url, wait_s)

    async def upscale(self, tenant: str, body: UpscaleRequest, opts: RequestOptions,
                      wait_s: int | None = None) -> Submitted:
        """An upscale: its input checked against the input cap (413 above it) and stored,
        then a task like any other."""
        model = await self.resolver.resolve(tenant, body.model)
        factor = model.parameters.upscale_factor
        if "upscale" not in FAMILIES[model.family].tasks or factor is None:
            raise UnsupportedTaskError(f"{model.id} does not upscale: the upscalers are "
                                       "listed by GET /v1/models?task=upscale", param="model")
        if body.scale is not None and body.scale != factor:
            raise InvalidRequestError(f"{model.id} upscales x{factor}; for x{body.scale} choose "
                                      "an upscaler of that factor (GET /v1/models?task=upscale)",
                                      param="scale")
        image = await self.inputs.load_image(
            tenant, body.image, "image", max_pixels=self.config.limits.max_upscale_input_pixels)
        warnings: list[str] = []
        checked = self.safety_check(tenant, body, None)
        options = await self.options(body, opts, checked, warnings)
        task_id, now = new_id("task"), time.time()
        key, _ = await self.inputs.store_input(tenant, task_id, "image0", image)
        params = body.to_generate_params(model.parameters, warnings, image.size, key, checked)
        return await self.submit(tenant, model, task_id, now, params, body.response_format,
                                 warnings, options, opts.base_url, wait_s)

    async def edit(self, tenant: str, body: EditRequest, opts: RequestOptions,
                   wait_s: int | None = None, origin: Origin | None = None) -> Submitted:
        """Every dialect's edit request, once it is an `EditRequest`: the inputs go to the
        store, the task carries their keys."""
        model = await self.resolver.resolve(tenant, body.model)
        task = route_edit(FAMILIES[model.family].tasks, body.mask_image is not None, model.id)
        if len(body.images) > model.parameters.max_input_images:
            raise InvalidRequestError(f"{model.id} takes at most "
                                      f"{model.parameters.max_input_images} input image(s)",
                                      param="image")
        images = [await self.inputs.load_image(tenant, ref, "image") for ref in body.images]
        mask = (await self.inputs.load_image(tenant, body.mask_image, "mask_image", "L")
                if body.mask_image is not None else None)
        warnings: list[str] = []
        checked = self.safety_check(tenant, body, origin)
        size = body.output_size(model.parameters, warnings, images[0].size)
        loras = await self.loras(tenant, model, body)
        options = await self.options(body, opts, checked, warnings)
        options.origin = origin
        task_id, now = new_id("task"), time.time()
        keys, mask_key = await self.inputs.store_inputs(tenant, task_id, images, mask, size,
                                                        warnings)
        params = body.to_generate_params(model.parameters, warnings, task=task, size=size,
                                         image_keys=keys, mask_key=mask_key, loras=loras,
                                         safety_check=checked)
        return await self.submit(tenant, model, task_id, now, params, body.response_format,
                                 warnings, options, opts.base_url, wait_s)

    async def loras(self, tenant: str, model: ModelRecord, body) -> list[AdapterRef]:
        """The task's adapters, staged: a LoRA model's own first, then the request's."""
        named = model_adapter(model, body.lora_scale) + [(a.path, a.scale) for a in body.loras]
        return await self.adapters.stage(tenant, model, named)

    def safety_check(self, tenant: str, body, origin: Origin | None) -> bool:
        """Whether the safety checker looks at the task's images: whenever one is configured,
        unless the request turns it off, which only keys the operator allows may do."""
        safety = self.config.safety
        if safety.checker is None:
            return False
        if body.safety_checker:
            return True
        if not safety.may_disable(tenant):
            field = SAFETY_FIELDS[origin.dialect if origin is not None else None]
            raise InvalidRequestError(f"{field}: the safety checker cannot be turned off with "
                                      "this key (the operator allows it per tenant: "
                                      "safety.tenants.<tenant>.allow_disable)", param=field)
        return False

    async def options(self, body, opts: RequestOptions, checked: bool,
                      warnings: list[str]) -> TaskOptions:
        """The task options of a generation or edit request (body fields and headers). A task
        whose images will be checked streams no previews: they would show what the checker
        has not seen."""
        if body.previews and checked:
            warnings.append("preview is off: this task's images are checked by the safety "
                            "checker before anything of them is shown")
        cancel_after = opts.cancel_after_s or body.cancel_after
        digest = None
        if opts.idempotency_key is not None:  # the same key must come with the same request
            canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
            digest = hashlib.sha256(f"{opts.path}\n{canonical}".encode()).hexdigest()
        if body.webhook is not None:
            await netguard.resolve_async(body.webhook, param="webhook",
                                         allow_private=self.config.inputs.allow_private_urls,
                                         error=WebhookURLError)
        return TaskOptions(cancel_after_s=cancel_after, preview=body.previews and not checked,
                           webhook=body.webhook,
                           webhook_events=tuple(dict.fromkeys(body.webhook_events_filter)),
                           idempotency_key=opts.idempotency_key, body_hash=digest)

    async def submit(self, tenant: str, model: ModelRecord, task_id: str, created_at: float,
                     params: GenerateParams, response_format: str, warnings: list[str],
                     options: TaskOptions, base_url: str = "",
                     wait_s: int | None = None) -> Submitted:
        attrs = task_attributes(task_id, tenant, model.id, model.family,
                                **{"tessera.batch_size": len(params.seeds)})
        for span in {telemetry.REQUEST_SPAN.get() or trace.get_current_span(),
                     trace.get_current_span()}:
            span.set_attributes(attrs)
        task = Task(id=task_id, tenant=tenant, model=model.id, family=model.family,
                    source=model.source, params=params, created_at=created_at,
                    deadline_at=created_at + self.config.limits.task_deadline_s,
                    price_per_image=model.price_per_image, currency=model.currency,
                    response_format=response_format, warnings=warnings, trace=inject(),
                    cancel_at=(created_at + options.cancel_after_s
                               if options.cancel_after_s else None),
                    preview=options.preview, webhook=options.webhook,
                    webhook_events=list(options.webhook_events),
                    idempotency_key=options.idempotency_key, base_url=base_url,
                    file_prefix=options.file_prefix, metadata=options.metadata,
                    origin=options.origin)
        started = time.monotonic()
        # an idempotent replay answers the original task. Waiting is part of the same actor
        # call, which saves a round trip to the task actor on the latency-critical path.
        hold = self.holds.take(tenant, WAITS) if wait_s else None  # 429 before submitting
        try:
            answered = await self.tasks.submit(task, options.body_hash, wait_s or 0)
        finally:
            if hold is not None:
                hold.release()
        created = TaskCreated(task_id=answered.id, job_id=answered.id, status=answered.status,
                              model=answered.model, created_at=answered.created_at,
                              queue_position=answered.queue_position,
                              warnings=answered.warnings)
        return Submitted(created, answered, started, wait_s)
