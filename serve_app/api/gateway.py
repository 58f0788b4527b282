"""What the routes call: the task and model actors, the store, and the one submit path.

Every dialect of the API (today's native routes, compatibility adapters later) submits through
`Gateway.submit`; every task read renders through `Gateway.task_view`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from deployments.outputs import encode_image
from deployments.registry import FAMILIES
from serve_app.api.holds import WAITS, TenantHolds
from serve_app.catalog import (
    CATALOG,
    find_entry,
    license_accepted,
    model_terms,
    unavailable_reason,
)
from serve_app.core import netguard, telemetry
from serve_app.core.config import TesseraConfig
from serve_app.core.errors import (
    GatewayTimeoutError,
    InvalidRequestError,
    LicenseAcceptanceRequiredError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TaskFailedError,
    TesseraError,
    UnknownUploadError,
    UnsupportedModelError,
    UnsupportedTaskError,
    WebhookURLError,
    unwrap_remote_error,
)
from serve_app.core.keys import input_key, output_key
from serve_app.core.storage import OutputStore
from serve_app.core.telemetry import inject, task_attributes
from serve_app.core.types import GenerateParams
from serve_app.inputs import decode_base64, decode_image, fetch_url
from serve_app.models import ModelRecord
from serve_app.protocol import (
    EditRequest,
    GenerationRequest,
    ModelInfo,
    TaskCreated,
    TaskView,
)
from serve_app.rules import image_source, parse_duration, route_edit
from serve_app.tasks.state import TERMINAL, Task
from serve_app.views import render_task


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# Ray retries a call that meets a restarting actor; past this, the client gets a 503 and retries
ACTOR_WAIT_S = 20.0


# imported models this ingress replica keeps (they never change once imported; see models.py)
MAX_CACHED_MODELS = 4096


# the longest a client may ask to wait for a task's end (`Prefer: wait=N`, `?wait=N`)
MAX_WAIT_S = 60
CATALOG_TTL_S = 10.0  # how long the catalog's availability is reused


def preferred_wait(prefer: str | None) -> int | None:
    """Seconds asked for by `Prefer: wait` or `Prefer: wait=N` (RFC 7240), at most MAX_WAIT_S;
    None when no wait is asked for (a malformed value is ignored, as the RFC allows)."""
    for token in (prefer or "").replace(";", ",").split(","):
        name, _, value = token.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not value:
            return MAX_WAIT_S
        # ASCII digits only ("²".isdigit() is true), and few of them: int() of thousands of
        # digits raises
        if value.isascii() and value.isdigit():
            return min(int(value[:6]), MAX_WAIT_S) if len(value) <= 6 else MAX_WAIT_S
        return None
    return None


def requested_wait(request) -> int | None:
    """The wait a request's `Prefer` header asks for (see preferred_wait)."""
    return preferred_wait(request.headers.get("prefer"))


@dataclass
class TaskOptions:
    """How a task is run and followed, beside its pipeline parameters: from the body's
    cancel_after, preview and webhook fields and the Cancel-After and Idempotency-Key headers."""

    cancel_after_s: float | None = None
    preview: bool = False
    webhook: str | None = None
    webhook_events: tuple[str, ...] = ("completed",)
    idempotency_key: str | None = None
    body_hash: str | None = None
    file_prefix: str = ""  # output file names start with it
    metadata: dict[str, str] = field(default_factory=dict)  # the client's labels (batch_id)


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


async def call(ref, timeout_s: float = ACTOR_WAIT_S) -> Any:
    """Await an actor call; our own errors come back as themselves, not wrapped by Ray, and an
    actor that is restarting (or gone) is a 503 with Retry-After, never a 500."""
    from ray.exceptions import ActorUnavailableError, RayActorError

    try:
        return await asyncio.wait_for(asyncio.shield(ref), timeout_s)
    except asyncio.TimeoutError:
        raise ServiceUnavailableError(
            f"the task service did not answer within {timeout_s:g} s (it may be restarting)",
            headers={"Retry-After": "5"}) from None
    except (ActorUnavailableError, RayActorError) as exc:
        raise ServiceUnavailableError(f"the task service is restarting: {type(exc).__name__}",
                                      headers={"Retry-After": "5"}) from None
    except Exception as exc:
        err = unwrap_remote_error(exc)
        if isinstance(err, TesseraError):
            raise err from None
        raise


class Gateway:
    def __init__(self, config: TesseraConfig, store: OutputStore, tasks, models,
                 holds: TenantHolds, base_url: str):
        self.config = config
        # where clients reach this server (links, Location): configured, never the request's
        # Host header, which any client can set
        self._public = base_url
        self.store = store
        self.tasks = tasks  # the task actor
        self.models = models  # the model registry actor
        self.holds = holds  # what each tenant holds open here (waits, streams)
        # (tenant, tm_* id) -> its record: every submission looks its model up, and an
        # imported model never changes, so only the first use of one pays the registry's hop
        self._imported: dict[tuple[str, str], ModelRecord] = {}
        self._catalog: tuple[float, dict[str, ModelInfo]] = (-CATALOG_TTL_S, {})

    def base_url_for(self, request) -> str:
        """The base of the links in an answer: `public_url` as configured; by default the bind
        address and the app's route prefix (the ASGI root_path, which Serve sets, not the
        client)."""
        if self.config.public_url:
            return self._public
        scope = request.scope  # app_root_path: the app's own prefix, not a mounted dialect's
        prefix = scope.get("app_root_path", scope.get("root_path", ""))
        return f"{self._public.rstrip('/')}{prefix.rstrip('/')}/"

    # ------------------------------------------------------------ models

    async def imported_model(self, tenant: str, model_id: str) -> tuple[ModelInfo, str]:
        """The model a request names and the source its family server loads: a tenant's
        imported `tm_*` model, or a catalog model by Hugging Face id or short name."""
        entry = None if model_id.startswith("tm_") else find_entry(model_id)
        if entry is None:
            record = self._imported.get((tenant, model_id))
            if record is None:  # an unknown id is asked again: it may be imported since
                record = await call(self.models.get.remote(tenant, model_id))
                if len(self._imported) >= MAX_CACHED_MODELS:
                    self._imported.pop(next(iter(self._imported)))
                self._imported[(tenant, model_id)] = record
            return record.info, record.source
        info = (await self.catalog())[entry.id]
        if not license_accepted(entry, entry.license, self.config):
            raise LicenseAcceptanceRequiredError(
                f"{entry.id} is under the licence {entry.license or 'unknown'!r}, which must be "
                "accepted before use: import it with /v1/my-models/validate-hf and "
                "/v1/my-models/import-hf (accepted_license: true) and call the tm_* id, or ask "
                "the operator to accept it for everyone (catalog.accepted_licenses)",
                param="model")
        if not info.available:
            raise UnsupportedModelError(f"{entry.id} cannot run here: "
                                        f"{info.unavailable_reason}", param="model")
        return info, entry.source

    async def models_for(self, tenant: str) -> list[ModelInfo]:
        """The catalog (available or not) and the tenant's imported models."""
        return list((await self.catalog()).values()) + await call(
            self.models.list.remote(tenant))

    def catalog_info(self, entry) -> ModelInfo:
        spec = FAMILIES[entry.family]
        terms = model_terms(entry.id, entry.family, entry.license, entry.parameters, self.config)
        reason = unavailable_reason(entry, self.config)
        return ModelInfo(
            id=entry.id, owned_by="tessera", name=entry.description or None,
            hf_model_id=entry.id, family=entry.family, pipeline_tag=spec.pipeline_tag,
            tasks=spec.tasks, license=terms.license or "see model card",
            requires_license_acceptance=not license_accepted(entry, entry.license,
                                                             self.config),
            pricing=terms.pricing, parameters=terms.parameters, available=reason is None,
            unavailable_reason=reason)

    async def catalog(self) -> dict[str, ModelInfo]:
        """Every catalog model by id, callable by name where `available`: worked out in a
        thread (it reads the Hugging Face cache and may probe the Hub) and kept briefly, as
        weights come into the cache and the Hub comes and goes."""
        made, models = self._catalog
        if time.monotonic() - made > CATALOG_TTL_S:
            models = await asyncio.to_thread(
                lambda: {e.id: self.catalog_info(e) for e in CATALOG.values()})
            self._catalog = (time.monotonic(), models)
        return models

    # ------------------------------------------------------------ the submit path

    async def submit_generation(self, tenant: str, body: GenerationRequest, request,
                                file_prefix: str = "", metadata: dict | None = None,
                                wait_s: int | None = None) -> Submitted:
        """Every dialect's text-to-image request, once it is a `GenerationRequest`; with
        wait_s, the answer comes once the task ends or after wait_s seconds."""
        model, source = await self.imported_model(tenant, body.model)
        if "text-to-image" not in model.tasks:
            raise UnsupportedTaskError(f"{model.id} edits images: call /v1/images/edits",
                                       param="model")
        params, warnings = body.to_generate_params(model.parameters)
        options = await self.options(body, request)
        options.file_prefix, options.metadata = file_prefix, metadata or {}
        task_id, now = self.created_now()
        return await self.submit(tenant, model, source, task_id, now, params, body.count,
                                 body.response_format, warnings, options,
                                 self.base_url_for(request), wait_s)

    async def submit_edit(self, tenant: str, body: EditRequest, request,
                          wait_s: int | None = None) -> Submitted:
        """Every dialect's edit request, once it is an `EditRequest`: the inputs go to the
        store, the task carries their keys."""
        model, source = await self.imported_model(tenant, body.model)
        task = route_edit(model.tasks, body.mask_image is not None, model.id)
        if len(body.images) > model.parameters.max_input_images:
            raise InvalidRequestError(f"{model.id} takes at most "
                                      f"{model.parameters.max_input_images} input image(s)",
                                      param="image")
        images = [await self.load_image(tenant, ref, "image") for ref in body.images]
        mask = (await self.load_image(tenant, body.mask_image, "mask_image", "L")
                if body.mask_image is not None else None)
        params, warnings = body.to_generate_params(model.parameters, task, images[0].size)
        options = await self.options(body, request)
        task_id, now = self.created_now()
        keys, mask_key = await self.store_inputs(tenant, task_id, images, mask,
                                                 (params.width, params.height), warnings)
        params = params.model_copy(update={"image_keys": keys, "mask_key": mask_key})
        return await self.submit(tenant, model, source, task_id, now, params, body.count,
                                 body.response_format, warnings, options,
                                 self.base_url_for(request), wait_s)

    @property
    def sync_wait_s(self) -> int:
        """The first wait of a synchronous dialect's submit (`finished` waits on for the rest
        of `compat.sync_wait_s`)."""
        return max(1, min(MAX_WAIT_S, int(self.config.compat.sync_wait_s)))

    async def finished(self, submitted: Submitted, tenant: str, base_url: str) -> TaskView:
        """The view of the task once it has completed (the synchronous dialects), however long
        that takes within `compat.sync_wait_s` of its submission; 504 after that, and the
        task's own error if it ended without images."""
        deadline = submitted.started + self.config.compat.sync_wait_s
        task, task_id = submitted.task, submitted.task_id
        while task.status not in TERMINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GatewayTimeoutError(
                    f"task {task_id} did not finish within {self.config.compat.sync_wait_s:g} "
                    f"s; it goes on: GET /v1/tasks/{task_id}", param=None)
            task = await self.wait_task(task_id, tenant, max(1, min(MAX_WAIT_S, int(left))))
        if task.status != "completed":
            error = task.error
            raise TaskFailedError(error.message if error else f"the task was {task.status}",
                                  code=error.code if error else task.status)
        return await self.task_view(task, base_url)

    async def options(self, body, request) -> TaskOptions:
        """The task options of a generation or edit request (body fields and headers)."""
        cancel_after = body.cancel_after
        header = request.headers.get("cancel-after")
        if header is not None:
            try:
                cancel_after = parse_duration(header)
            except ValueError as exc:
                raise InvalidRequestError(f"Cancel-After: {exc}", param="Cancel-After") from None
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 255:
            raise InvalidRequestError("Idempotency-Key must be 1 to 255 characters",
                                      param="Idempotency-Key")
        digest = None
        if key is not None:  # the same key must come with the same request
            canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
            digest = hashlib.sha256(f"{request.url.path}\n{canonical}".encode()).hexdigest()
        if body.webhook is not None:
            await netguard.resolve_async(body.webhook, param="webhook",
                                         allow_private=self.config.inputs.allow_private_urls,
                                         error=WebhookURLError)
        return TaskOptions(cancel_after_s=cancel_after, preview=body.preview,
                           webhook=body.webhook,
                           webhook_events=tuple(dict.fromkeys(body.webhook_events_filter)),
                           idempotency_key=key, body_hash=digest)

    async def submit(self, tenant: str, model: ModelInfo, source: str, task_id: str,
                     created_at: float, params: GenerateParams, n: int, response_format: str,
                     warnings: list[str], options: TaskOptions, base_url: str = "",
                     wait_s: int | None = None) -> Submitted:
        attrs = task_attributes(task_id, tenant, model.id, model.family,
                                **{"tessera.batch_size": len(params.seeds)})
        for span in {telemetry.REQUEST_SPAN.get() or trace.get_current_span(),
                     trace.get_current_span()}:
            span.set_attributes(attrs)
        summary = params.model_dump(include={
            "task", "prompt", "negative_prompt", "width", "height", "num_inference_steps",
            "guidance_scale", "strength", "seeds", "output_format"}) | {
            "n": n, "response_format": response_format}
        task = Task(id=task_id, tenant=tenant, model=model.id, family=model.family,
                    source=source, params=params, created_at=created_at,
                    deadline_at=created_at + self.config.limits.task_deadline_s,
                    price_per_image=model.pricing.per_image, currency=model.pricing.currency,
                    request=summary, warnings=warnings, trace=inject(),
                    cancel_at=(created_at + options.cancel_after_s
                               if options.cancel_after_s else None),
                    preview=options.preview, webhook=options.webhook,
                    webhook_events=list(options.webhook_events),
                    idempotency_key=options.idempotency_key, base_url=base_url,
                    file_prefix=options.file_prefix, metadata=options.metadata)
        started = time.monotonic()
        # an idempotent replay answers the original task. Waiting is part of the same actor
        # call, which saves a round trip to the task actor on the latency-critical path.
        hold = self.holds.take(tenant, WAITS) if wait_s else None  # 429 before submitting
        try:
            answered: Task = await call(
                self.tasks.submit.remote(task, options.body_hash, wait_s or 0),
                timeout_s=(wait_s or 0) + ACTOR_WAIT_S)
        finally:
            if hold is not None:
                hold.release()
        created = TaskCreated(task_id=answered.id, job_id=answered.id, status=answered.status,
                              model=answered.model, created_at=answered.created_at,
                              queue_position=answered.queue_position,
                              warnings=answered.warnings)
        return Submitted(created, answered, started, wait_s)

    # ------------------------------------------------------------ edit inputs

    async def load_image(self, tenant: str, ref, param: str, mode: str = "RGB"):
        limits = self.config.inputs
        kind, value = image_source(ref)
        if kind == "url":
            netguard.parse(value, param=param)  # a malformed URL is a 400 before anything
        own = self.store.own_key(value) if kind == "url" else None
        if own is not None and own.startswith(f"{tenant}/"):
            # one of our own output links (an image just generated): read from the store
            data = await self.store.get_async(own)
        elif kind == "url":
            data = await fetch_url(value, param=param, max_bytes=limits.max_image_bytes,
                                   timeout_s=limits.url_timeout_s,
                                   allow_private=limits.allow_private_urls)
        elif kind == "upload":
            key, _, _ = await self.find_upload(tenant, value, param)
            data = await self.store.get_async(key)
        else:
            data = decode_base64(value, param=param, max_bytes=limits.max_image_bytes)
        # Decoding is CPU work: off the event loop.
        return await asyncio.to_thread(decode_image, data, param=param, mode=mode,
                                       max_bytes=limits.max_image_bytes,
                                       max_pixels=limits.max_image_pixels)

    async def store_inputs(self, tenant: str, task_id: str, images: list, mask,
                           size: tuple[int, int], warnings: list[str],
                           ) -> tuple[list[str], str | None]:
        """Inputs go to the store (not into actor messages), the mask at the output size;
        returns their keys."""
        keys = []
        for i, image in enumerate(images):
            key = input_key(tenant, task_id, f"image{i}")
            await self._put_png(key, image)
            keys.append(key)
        if mask is None:
            return keys, None
        if mask.size != size:
            warnings.append(f"mask_image resized from {mask.size[0]}x{mask.size[1]} to "
                            f"{size[0]}x{size[1]}")
            mask = mask.resize(size, resample=0)  # nearest: keep the mask binary
        mask_key = input_key(tenant, task_id, "mask")
        await self._put_png(mask_key, mask)
        return keys, mask_key

    async def _put_png(self, key: str, image) -> None:
        await self.store.put_async(key, await asyncio.to_thread(encode_image, image, "png"),
                                   "image/png")

    async def find_upload(self, tenant: str, upload_id: str,
                          param: str = "upload_id") -> tuple[str, int, str]:
        """The tenant's upload, once its bytes arrived: another tenant's id is never found."""
        found = await call(self.models.find_upload.remote(tenant, upload_id))
        missing = UnknownUploadError(f"no upload {upload_id!r} (or nothing was PUT to it yet)",
                                     param=param)
        if found is None:
            raise missing
        key, content_type, declared = found
        try:
            size, _ = await self.store.stat_async(key)
        except NotFoundError:
            raise missing from None
        # an object store's presigned PUT cannot bound what arrives: checked here
        cap = min(declared or self.config.storage.max_upload_bytes,
                  self.config.storage.max_upload_bytes)
        if size > cap:
            raise PayloadTooLargeError(f"upload {upload_id} is {size} bytes, over the {cap} "
                                       "bytes it was declared with", param=param)
        return key, size, content_type

    async def answer(self, submitted: Submitted, request) -> Any:
        """The submission's answer: 202 with the task id, or, when it waited (`Prefer: wait=N`),
        the task view once it ended (200) or as it was after N seconds (202, with Location)."""
        from fastapi.responses import JSONResponse

        if submitted.wait_s is None:
            return submitted.created
        view = await self.task_view(submitted.task, self.base_url_for(request))
        headers = {"Preference-Applied": f"wait={submitted.wait_s}"}
        if view.status not in TERMINAL:
            headers["Location"] = f"{self.base_url_for(request)}v1/tasks/{submitted.task_id}"
        return JSONResponse(view.model_dump(mode="json"), headers=headers,
                            status_code=202 if "Location" in headers else 200)

    # ------------------------------------------------------------ reading tasks

    async def read_task(self, task_id: str, tenant: str, base_url: str,
                        wait_s: float = 0) -> TaskView:
        """The task view; with wait_s, once the task has ended or after wait_s seconds."""
        if wait_s:
            task = await self.wait_task(task_id, tenant, wait_s)
        else:
            task = await call(self.tasks.get.remote(task_id, tenant))
        return await self.task_view(task, base_url)

    async def wait_task(self, task_id: str, tenant: str, wait_s: float) -> Task:
        """The task once it has ended, or as it is after wait_s seconds."""
        async with self.holds.holding(tenant, WAITS):
            return await call(self.tasks.wait.remote(task_id, tenant, wait_s),
                              timeout_s=wait_s + ACTOR_WAIT_S)

    async def task_view(self, task: Task, base_url: str, with_b64: bool = True) -> TaskView:
        return await render_task(task, self.store, base_url, self.config.storage.url_ttl_s,
                                 with_b64)

    def future_urls(self, tenant: str, view: TaskView, file_prefix: str,
                    base_url: str) -> list[str]:
        """The links a task's images will have once it completes (the store signs a key
        before its object exists)."""
        req = view.request
        return [self.store.url(output_key(tenant, view.id, view.created_at, i,
                                          req["output_format"], file_prefix),
                               base_url, self.config.storage.url_ttl_s)
                for i in range(len(req["seeds"]))]

    def created_now(self) -> tuple[str, float]:
        return new_id("task"), time.time()
