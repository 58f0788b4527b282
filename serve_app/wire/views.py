"""The domain's records as their clients see them: the one place the stored records (`core.tasks`,
`core.models`) meet the wire schema. Every route, stream and webhook renders through here.

Output links are signed for `url_ttl_s` against the base URL the client used (the ingress's
request URL, or the one the task was submitted through, for webhooks). What a model's family
says about it (its tasks, its pipeline tag, whether it takes LoRAs) is read from the family,
not stored with the model.
"""

from __future__ import annotations

import base64
import datetime
import json

from deployments.registry import FAMILIES
from serve_app.core.models import ModelRecord, Validation
from serve_app.core.storage import OutputStore
from serve_app.core.tasks import Task
from serve_app.wire import fal, replicate
from serve_app.wire.schema import (
    AdapterUse,
    ControlNetUse,
    ModelInfo,
    Pricing,
    ReferenceUse,
    TaskRequest,
    TaskResult,
    TaskView,
    ValidateResponse,
)

VIEW_FIELDS = {"id", "status", "model", "family", "created_at", "updated_at", "started_at",
               "completed_at", "queue_position", "progress", "attempts", "history", "warnings",
               "error", "cancel_at", "metadata"}


def task_request(task: Task) -> TaskRequest:
    """The task's effective parameters, from the parameters its pipeline runs with."""
    p = task.params
    return TaskRequest(
        **p.model_dump(include={"task", "prompt", "negative_prompt", "width", "height",
                                "num_inference_steps", "guidance_scale", "strength", "seeds",
                                "output_format"}),
        n=len(p.seeds), response_format=task.response_format, safety_checker=p.safety_check,
        loras=[AdapterUse(path=a.path, scale=a.scale, sha256=a.sha256) for a in p.loras],
        controlnets=[ControlNetUse(
            path=c.path, conditioning_scale=c.conditioning_scale, start=c.start, end=c.end,
            preprocess=c.preprocess, control_mode=c.control_mode, image_sha256=c.image_sha256)
            for c in p.controlnets],
        reference_images=[ReferenceUse(scale=r.scale, image_sha256=r.image_sha256)
                          for r in p.reference_images],
        scale=p.upscale)


async def render_task(task: Task, store: OutputStore, base_url: str, url_ttl_s: int,
                      with_b64: bool = True) -> TaskView:
    view = TaskView(**task.model_dump(include=VIEW_FIELDS), request=task_request(task),
                    webhook=task.webhook_state)
    out = task.result
    if out is not None:
        want_b64 = with_b64 and task.response_format == "b64_json"
        data = []
        for image in out.images:
            item = {"seed": image.seed, "content_type": image.content_type, "nsfw": image.nsfw,
                    "url": store.url(image.key, base_url, url_ttl_s)}
            if want_b64:
                item["b64_json"] = base64.b64encode(await store.get_async(image.key)).decode()
            data.append(item)
        created = datetime.datetime.fromtimestamp(task.completed_at or task.updated_at,
                                                  datetime.timezone.utc)
        view.result = TaskResult(created=created.strftime("%Y-%m-%dT%H:%M:%S"), data=data,
                                 usage=out.usage, width=out.width, height=out.height,
                                 timings_ms=out.timings_ms, safety=out.safety)
    return view


async def _native_webhook(task: Task, store: OutputStore, url_ttl_s: int) -> str:
    return (await render_task(task, store, task.base_url, url_ttl_s, with_b64=False)
            ).model_dump_json()


async def _replicate_webhook(task: Task, store: OutputStore, url_ttl_s: int) -> str:
    return (await replicate.prediction(task, store, task.base_url, url_ttl_s)).model_dump_json()


async def _fal_webhook(task: Task, store: OutputStore, url_ttl_s: int) -> str:
    return json.dumps(await fal.webhook_body(task, store, task.base_url, url_ttl_s))


# a webhook's body speaks the dialect its task was asked for in
WEBHOOK_BODIES = {None: _native_webhook, "replicate": _replicate_webhook, "fal": _fal_webhook}


async def webhook_body(task: Task, store: OutputStore, url_ttl_s: int) -> str:
    """What a task's webhook POSTs: the task as its client's dialect shows it, with links
    against the base URL it was submitted through."""
    dialect = task.origin.dialect if task.origin is not None else None
    return await WEBHOOK_BODIES[dialect](task, store, url_ttl_s)


def model_info(record: ModelRecord, unavailable_reason: str | None = None) -> ModelInfo:
    """A model (a tenant's or the catalog's); `unavailable_reason` says why it cannot run here
    now, if it cannot."""
    spec = FAMILIES[record.family]
    model = record.kind != "controlnet"  # a ControlNet is named in requests, not called
    return ModelInfo(
        id=record.id, owned_by=record.tenant, name=record.name,
        hf_model_id=record.hf_model_id, family=record.family, pipeline_tag=spec.pipeline_tag,
        tasks=spec.tasks if model else [], license=record.license,
        requires_license_acceptance=record.requires_license_acceptance,
        pricing=Pricing(per_image=record.price_per_image, currency=record.currency),
        parameters=record.parameters, created_at=record.created_at,
        execution_mode=record.execution_mode, available=unavailable_reason is None,
        unavailable_reason=unavailable_reason, kind=record.kind, base_model=record.base_model,
        supports_loras=spec.takes_loras and model)


def validation_view(v: Validation) -> ValidateResponse:
    """What validate-hf answers. Where the weights are is the server's business: a local
    directory is named as the client gave it."""
    spec = FAMILIES.get(v.family) if v.family else None
    source = None
    if v.source is not None:
        source = str(v.source)
        if v.source.base.startswith("/"):
            source = v.base_model if v.kind == "lora" else v.hf_model_id
    adapter = None
    if v.adapter is not None:
        adapter = v.hf_model_id if v.adapter.kind == "local" else str(v.adapter)
    return ValidateResponse(
        validation_id=v.id, hf_model_id=v.hf_model_id, supported=v.supported,
        errors=v.errors, warnings=v.warnings, family=v.family,
        pipeline_class=v.pipeline_class,
        pipeline_tag=spec.pipeline_tag if spec else None,
        tasks=spec.tasks if spec and v.kind != "controlnet" else [],
        license=v.license, requires_license_acceptance=v.requires_license_acceptance,
        pricing=(Pricing(per_image=v.price_per_image, currency=v.currency)
                 if v.price_per_image is not None else None),
        parameters=v.parameters, source=source, kind=v.kind, base_model=v.base_model,
        rank=v.rank, target_modules=v.target_modules, size=v.size, sha256=v.sha256,
        adapter_source=adapter,
        supports_loras=bool(spec and spec.takes_loras and v.kind != "controlnet"))
