"""The HTTP API: a FastAPI app on a Serve ingress deployment.

No `from __future__ import annotations` here: Serve rewrites these methods' signatures for
class-based views and needs the real annotation objects to tell bodies from dependencies.

Each route reads as validate -> submit -> return. Work lives in the actors (tasks, models), the
family deployments and `validation`; errors are typed and rendered by `errors` in one place.
"""


import asyncio
import base64
import secrets
import time
from typing import Any, Literal

import ray
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from ray import serve

from deployments.base import encode_image
from serve_app import telemetry
from serve_app.auth import ApiKeys
from serve_app.catalog import CATALOG, price_per_image, requires_acceptance
from serve_app.config import TesseraConfig
from serve_app.errors import (
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TesseraError,
    UnknownUploadError,
    UnsupportedTaskError,
    install_error_handlers,
)
from serve_app.inputs import decode_base64, decode_image, fetch_url
from serve_app.models import model_registry
from serve_app.protocol import (
    UPLOAD_TYPES,
    EditRequest,
    GenerationRequest,
    ImportRequest,
    ModelInfo,
    ModelList,
    Pricing,
    TaskCreated,
    TaskList,
    TaskResult,
    TaskView,
    UploadCreated,
    UploadInfo,
    UploadRequest,
    ValidateRequest,
    ValidateResponse,
    image_source,
    route_edit,
)
from serve_app.storage import LocalDiskStore, content_type_for, make_store
from serve_app.tasks import task_manager
from serve_app.telemetry import (
    extract,
    inject,
    setup_logging,
    setup_tracing,
    task_attributes,
    tracer,
)
from serve_app.validation import validate

app = FastAPI(title="Tessera", version="0.1.0",
              description="Self-hosted image generation: import a model, submit, poll, download.")
install_error_handlers(app)


@app.middleware("http")
async def trace_requests(request: Request, call_next):
    """A server span per request, child of the client's `traceparent` when it sends one.

    (An ASGI middleware: FastAPIInstrumentor breaks Serve, ray-project/ray#36014.)
    """
    with tracer().start_as_current_span(f"{request.method} {request.url.path}",
                                        context=extract(dict(request.headers)),
                                        kind=SpanKind.SERVER) as span:
        span.set_attribute("http.method", request.method)
        # through the module: Serve pickles this app, and a ContextVar cannot be pickled
        telemetry.REQUEST_SPAN.set(span)
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", None)
        if route:  # known only after routing: name the span by its template, not the URL
            span.update_name(f"{request.method} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.status_code", response.status_code)
        return response


def authenticate(request: Request) -> str:
    return request.app.state.keys.tenant_for(request.headers)


async def call(ref) -> Any:
    """Await an actor call; re-raise our own errors as themselves, not wrapped by Ray."""
    try:
        return await ref
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, TesseraError):
            raise exc.cause from None
        raise


EDIT_TASKS = {"image-to-image", "inpaint", "edit"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# Helpers sit above the class: Serve serialises the ingress class when it is decorated, and
# names defined below it would be missing in the replica.
def upload_key(tenant: str, upload_id: str, content_type: str) -> str:
    return f"{tenant}/uploads/{upload_id}.{UPLOAD_TYPES[content_type]}"


async def read_capped(request: Request, cap: int) -> bytes:
    """The request body, refused as soon as it passes `cap` bytes."""
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise PayloadTooLargeError(f"uploads are limited to {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@serve.deployment(name="ingress")
@serve.ingress(app)
class Ingress:
    def __init__(self, config: dict, families: dict):
        self.config = TesseraConfig.model_validate(config)
        self.store = make_store(self.config)
        self.tasks = task_manager(self.config.instance)
        self.models = model_registry(self.config.instance, self.config.data_dir)
        app.state.keys = ApiKeys.from_env(self.config.data_dir)
        setup_tracing(self.config.tracing, self.config.data_dir, "ingress")
        setup_logging()
        ray.get(self.tasks.configure.remote(config, families))

    # ------------------------------------------------------------ health

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(self) -> dict:
        try:
            await asyncio.wait_for(self.tasks.ping.remote(), timeout=5)
        except Exception as exc:
            raise ServiceUnavailableError(f"task actor not answering: {exc}") from None
        return {"status": "ready", "families": sorted(self.config.enabled_families())}

    # ------------------------------------------------------------ models

    @app.post("/v1/my-models/validate-hf", response_model=ValidateResponse)
    async def validate_hf(self, body: ValidateRequest, tenant: str = Depends(authenticate)):
        # Reads the disk and maybe the Hub, and may build a tiny checkpoint: not on the loop.
        result = await asyncio.to_thread(validate, body.hf_model_id, self.config, new_id("val"))
        await call(self.models.add_validation.remote(tenant, result.model_dump(mode="json")))
        return result

    @app.post("/v1/my-models/import-hf", response_model=ModelInfo, status_code=201)
    async def import_hf(self, body: ImportRequest, tenant: str = Depends(authenticate)):
        record = await call(self.models.import_model.remote(
            tenant, body.validation_id, body.accepted_license, body.execution_mode, body.name))
        return record["info"]

    @app.get("/v1/models", response_model=ModelList)
    async def list_models(self, task: str | None = Query(None),
                          tenant: str = Depends(authenticate)):
        imported = [ModelInfo.model_validate(m)
                    for m in await call(self.models.list.remote(tenant))]
        models = self._catalog_models() + imported
        # "image-to-image" lists everything that edits: img2img, inpainting, instruction edits
        wanted = EDIT_TASKS if task == "image-to-image" else {task}
        return ModelList(data=[m for m in models if task is None or wanted & set(m.tasks)])

    def _catalog_models(self) -> list[ModelInfo]:
        from deployments.registry import FAMILIES

        out = []
        enabled = self.config.enabled_families()
        for entry in CATALOG.values():
            if entry.unsupported_reason or entry.family not in enabled:
                continue
            spec = FAMILIES[entry.family]
            out.append(ModelInfo(
                id=entry.id, owned_by="tessera", hf_model_id=entry.id, family=entry.family,
                pipeline_tag=spec.pipeline_tag,
                tasks=spec.tasks, license=entry.license or "see model card",
                requires_license_acceptance=requires_acceptance(entry.license),
                pricing=Pricing(per_image=price_per_image(entry.id, entry.family,
                                                          self.config.pricing),
                                currency=self.config.pricing.currency),
                parameters=entry.parameters or spec.parameters))
        return out

    # ------------------------------------------------------------ images

    @app.post("/v1/images/generations", response_model=TaskCreated, status_code=202)
    async def generations(self, body: GenerationRequest, tenant: str = Depends(authenticate)):
        model, source = await self._imported_model(tenant, body.model)
        if "text-to-image" not in model.tasks:
            raise UnsupportedTaskError(f"{model.id} edits images: call /v1/images/edits",
                                       param="model")
        task_id, now = new_id("task"), time.time()
        params, warnings = body.to_generate_params(task_id=task_id, tenant=tenant,
                                                   spec=model.parameters, created_at=now)
        return await self._submit(model, source, params, body, warnings)

    @app.post("/v1/images/edits", response_model=TaskCreated, status_code=202)
    async def edits(self, body: EditRequest, tenant: str = Depends(authenticate)):
        model, source = await self._imported_model(tenant, body.model)
        task = route_edit(model.tasks, body.mask_image is not None, model.id)
        if len(body.images) > model.parameters.max_input_images:
            raise InvalidRequestError(f"{model.id} takes at most "
                                      f"{model.parameters.max_input_images} input image(s)",
                                      param="image")
        images = [await self._load_image(tenant, ref, "image") for ref in body.images]
        mask = (await self._load_image(tenant, body.mask_image, "mask_image", "L")
                if body.mask_image is not None else None)
        task_id, now = new_id("task"), time.time()
        params, warnings = body.to_generate_params(
            task_id=task_id, tenant=tenant, spec=model.parameters, created_at=now, task=task,
            input_size=images[0].size)
        await self._store_inputs(params, images, mask, warnings)
        return await self._submit(model, source, params, body, warnings)

    async def _submit(self, model: ModelInfo, source: str, params, body,
                      warnings: list[str]) -> TaskCreated:
        attrs = task_attributes(params.task_id, params.tenant, model.id, model.family,
                                **{"tessera.batch_size": len(params.seeds)})
        for span in {telemetry.REQUEST_SPAN.get() or trace.get_current_span(),
                     trace.get_current_span()}:
            span.set_attributes(attrs)
        request_summary = params.model_dump(include={
            "task", "prompt", "negative_prompt", "width", "height", "num_inference_steps",
            "guidance_scale", "strength", "seeds", "output_format"}) | {
            "n": body.n, "response_format": body.response_format}
        view = await call(self.tasks.submit.remote(dict(
            id=params.task_id, tenant=params.tenant, model=model.id, family=model.family,
            source=source, params=params.model_dump(), created_at=params.created_at,
            deadline_at=params.created_at + self.config.limits.task_deadline_s,
            price_per_image=model.pricing.per_image, currency=model.pricing.currency,
            request=request_summary, warnings=warnings, trace=inject())))
        return TaskCreated(task_id=params.task_id, status=view["status"], model=model.id,
                           created_at=params.created_at, queue_position=view["queue_position"],
                           warnings=warnings)

    async def _imported_model(self, tenant: str, model_id: str) -> tuple[ModelInfo, str]:
        record = await call(self.models.get.remote(tenant, model_id))
        return ModelInfo.model_validate(record["info"]), record["source"]

    async def _load_image(self, tenant: str, ref, param: str, mode: str = "RGB"):
        limits = self.config.inputs
        kind, value = image_source(ref)
        if kind == "url":
            data = await fetch_url(value, param=param, max_bytes=limits.max_image_bytes,
                                   timeout_s=limits.url_timeout_s,
                                   allow_private=limits.allow_private_urls)
        elif kind == "upload":
            key, _, _ = await self._find_upload(tenant, value, param)
            data = await self.store.get_async(key)
        else:
            data = decode_base64(value, param=param, max_bytes=limits.max_image_bytes)
        # Decoding is CPU work: off the event loop.
        return await asyncio.to_thread(decode_image, data, param=param, mode=mode,
                                       max_bytes=limits.max_image_bytes,
                                       max_pixels=limits.max_image_pixels)

    async def _store_inputs(self, params, images: list, mask, warnings: list[str]) -> None:
        """Keep inputs in the store (not in actor messages); the mask at the output size."""
        prefix = f"{params.tenant}/inputs/{params.task_id}"
        for i, image in enumerate(images):
            key = f"{prefix}/image{i}.png"
            await self.store.put_async(key, await asyncio.to_thread(encode_image, image, "png"),
                                       "image/png")
            params.image_keys.append(key)
        if mask is not None:
            target = (params.width, params.height)
            if mask.size != target:
                warnings.append(f"mask_image resized from {mask.size[0]}x{mask.size[1]} to "
                                f"{target[0]}x{target[1]}")
                mask = mask.resize(target, resample=0)  # nearest: keep the mask binary
            params.mask_key = f"{prefix}/mask.png"
            await self.store.put_async(params.mask_key,
                                       await asyncio.to_thread(encode_image, mask, "png"),
                                       "image/png")

    # ------------------------------------------------------------ tasks and files

    @app.get("/v1/tasks", response_model=TaskList)
    async def list_tasks(self, request: Request,
                         status: Literal["queued", "in_progress", "completed", "failed"] | None =
                         Query(None), limit: int = Query(50, ge=1, le=500),
                         tenant: str = Depends(authenticate)):
        raws = await call(self.tasks.list.remote(tenant, status, limit))
        return TaskList(data=[await self._task_view(r, str(request.base_url), with_b64=False)
                              for r in raws])

    @app.get("/v1/tasks/{task_id}", response_model=TaskView)
    async def get_task(self, task_id: str, request: Request,
                       tenant: str = Depends(authenticate)):
        raw = await call(self.tasks.get.remote(task_id, tenant))
        return await self._task_view(raw, str(request.base_url))

    async def _task_view(self, raw: dict, base_url: str, with_b64: bool = True) -> TaskView:
        result = raw.pop("result")
        view = TaskView.model_validate(raw)
        if result is not None:
            want_b64 = with_b64 and raw["request"].get("response_format") == "b64_json"
            data = []
            for image in result["images"]:
                item = {"seed": image["seed"], "content_type": image["content_type"],
                        "url": self.store.url(image["key"], base_url,
                                              self.config.storage.url_ttl_s)}
                if want_b64:
                    item["b64_json"] = base64.b64encode(
                        await self.store.get_async(image["key"])).decode()
                data.append(item)
            view.result = TaskResult(data=data, usage=result["usage"], width=result["width"],
                                     height=result["height"], timings_ms=result["timings_ms"])
        return view

    @app.get("/v1/files/{key:path}")
    async def get_file(self, key: str, expires: int = Query(...), signature: str = Query(...)):
        self._local_store().verify("GET", key, expires, signature)
        data = await self.store.get_async(key)
        return Response(content=data, media_type=content_type_for(key))

    @app.put("/v1/files/{key:path}", status_code=200)
    async def put_file(self, key: str, request: Request, expires: int = Query(...),
                       signature: str = Query(...)):
        self._local_store().verify("PUT", key, expires, signature)
        data = await read_capped(request, self.config.storage.max_upload_bytes)
        await self.store.put_async(key, data, content_type_for(key))
        return {"key": key, "size": len(data)}

    def _local_store(self) -> LocalDiskStore:
        if not isinstance(self.store, LocalDiskStore):
            raise NotFoundError("files are served by the object store, not by this API")
        return self.store

    # ------------------------------------------------------------ uploads

    @app.post("/v1/uploads", response_model=UploadCreated, status_code=201)
    async def create_upload(self, body: UploadRequest, request: Request,
                            tenant: str = Depends(authenticate)):
        cap = self.config.storage.max_upload_bytes
        if body.size > cap:
            raise PayloadTooLargeError(f"uploads are limited to {cap} bytes", param="size")
        upload_id, ttl = new_id("upl"), self.config.storage.upload_ttl_s
        key = upload_key(tenant, upload_id, body.content_type)
        url = await asyncio.to_thread(self.store.upload_url, key, str(request.base_url), ttl)
        return UploadCreated(upload_id=upload_id, upload_url=url,
                             headers={"Content-Type": body.content_type},
                             expires_at=time.time() + ttl, max_bytes=cap)

    @app.get("/v1/uploads/{upload_id}", response_model=UploadInfo)
    async def get_upload(self, upload_id: str, tenant: str = Depends(authenticate)):
        key, size, content_type = await self._find_upload(tenant, upload_id)
        return UploadInfo(upload_id=upload_id, size=size, content_type=content_type)

    async def _find_upload(self, tenant: str, upload_id: str,
                           param: str = "upload_id") -> tuple[str, int, str]:
        """The tenant's upload: the key holds the tenant, so another's id is never found."""
        for content_type in UPLOAD_TYPES:
            key = upload_key(tenant, upload_id, content_type)
            try:
                size, _ = await self.store.stat_async(key)
            except NotFoundError:
                continue
            if size > self.config.storage.max_upload_bytes:
                raise PayloadTooLargeError(f"upload {upload_id} is {size} bytes, over the "
                                           f"{self.config.storage.max_upload_bytes} limit",
                                           param=param)
            return key, size, content_type
        raise UnknownUploadError(f"no upload {upload_id!r} (or nothing was PUT to it yet)",
                                 param=param)
