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
from typing import Any

import ray
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response
from ray import serve

from serve_app.auth import ApiKeys
from serve_app.catalog import CATALOG, price_per_image, requires_acceptance
from serve_app.config import TesseraConfig
from serve_app.errors import (
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TesseraError,
    UnknownUploadError,
    UnsupportedTaskError,
    install_error_handlers,
)
from serve_app.models import model_registry
from serve_app.protocol import (
    GenerationRequest,
    ImportRequest,
    ModelInfo,
    ModelList,
    Pricing,
    TaskCreated,
    TaskResult,
    TaskView,
    UPLOAD_TYPES,
    UploadCreated,
    UploadInfo,
    UploadRequest,
    ValidateRequest,
    ValidateResponse,
)
from serve_app.storage import LocalDiskStore, content_type_for, make_store
from serve_app.tasks import task_manager
from serve_app.validation import validate

app = FastAPI(title="Tessera", version="0.1.0",
              description="Self-hosted image generation: import a model, submit, poll, download.")
install_error_handlers(app)


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
        return ModelList(data=[m for m in models if task is None or task in m.tasks])

    def _catalog_models(self) -> list[ModelInfo]:
        from deployments.registry import FAMILIES

        out = []
        for entry in CATALOG.values():
            spec = FAMILIES[entry.family]
            out.append(ModelInfo(
                id=entry.id, owned_by="tessera", hf_model_id=entry.id, family=entry.family,
                pipeline_tag="text-to-image" if "text-to-image" in spec.tasks else "image-to-image",
                tasks=spec.tasks, license=entry.license,
                requires_license_acceptance=requires_acceptance(entry.license),
                pricing=Pricing(per_image=price_per_image(entry.id, entry.family,
                                                          self.config.pricing),
                                currency=self.config.pricing.currency),
                parameters=entry.parameters or spec.parameters))
        return out

    # ------------------------------------------------------------ images

    @app.post("/v1/images/generations", response_model=TaskCreated, status_code=202)
    async def generations(self, body: GenerationRequest, tenant: str = Depends(authenticate)):
        model, source = await self._imported_model(tenant, body.model, "text-to-image")
        task_id, now = new_id("task"), time.time()
        params, warnings = body.to_generate_params(task_id=task_id, tenant=tenant,
                                                   spec=model.parameters, created_at=now)
        request_summary = params.model_dump(include={
            "prompt", "negative_prompt", "width", "height", "num_inference_steps",
            "guidance_scale", "seeds", "output_format", "task"}) | {
            "n": body.n, "response_format": body.response_format}
        view = await call(self.tasks.submit.remote(dict(
            id=task_id, tenant=tenant, model=model.id, family=model.family, source=source,
            params=params.model_dump(), created_at=now,
            deadline_at=now + self.config.limits.task_deadline_s,
            price_per_image=model.pricing.per_image, currency=model.pricing.currency,
            request=request_summary, warnings=warnings)))
        return TaskCreated(task_id=task_id, status=view["status"], model=model.id,
                           created_at=now, queue_position=view["queue_position"],
                           warnings=warnings)

    async def _imported_model(self, tenant: str, model_id: str,
                              task: str) -> tuple[ModelInfo, str]:
        record = await call(self.models.get.remote(tenant, model_id))
        model = ModelInfo.model_validate(record["info"])
        if task not in model.tasks:
            raise UnsupportedTaskError(f"{model_id} does not do {task}; it does {model.tasks}",
                                       param="model")
        return model, record["source"]

    # ------------------------------------------------------------ tasks and files

    @app.get("/v1/tasks/{task_id}", response_model=TaskView)
    async def get_task(self, task_id: str, request: Request,
                       tenant: str = Depends(authenticate)):
        raw = await call(self.tasks.get.remote(task_id, tenant))
        return await self._task_view(raw, str(request.base_url))

    async def _task_view(self, raw: dict, base_url: str) -> TaskView:
        result = raw.pop("result")
        view = TaskView.model_validate(raw)
        if result is not None:
            want_b64 = raw["request"].get("response_format") == "b64_json"
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

    async def _find_upload(self, tenant: str, upload_id: str) -> tuple[str, int, str]:
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
                                           param="upload_id")
            return key, size, content_type
        raise UnknownUploadError(f"no upload {upload_id!r} (or nothing was PUT to it yet)",
                                 param="upload_id")
