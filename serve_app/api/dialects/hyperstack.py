"""Hyperstack AI Studio: the routes its client calls that Tessera's native API does not have.

Its generations and edits go to the native `/v1/images/...` routes unchanged; here are its task
path (`/v1/images/tasks/{job_id}`) and its model list (`/v1/base_models`), which names models by
the short names every tenant can call.

The schema below is Hyperstack AI Studio's where it differs from Tessera's own. (Its image
requests and task views are Tessera's native ones, which accept its `image_size`,
`num_images` and top-level `image_url`, and answer its `job_id`, `result.created` and
`usage.total_tokens`.)
"""

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from deployments.registry import FAMILIES
from serve_app.api.deps import authenticate, base_url, gateway
from serve_app.api.gateway import Gateway
from serve_app.wire.schema import TaskView


class BaseModelName(BaseModel):
    model_name: str


class BaseModelsAnswer(BaseModel):
    models: list[BaseModelName]


router = APIRouter()

MODALITY_TASKS = {"text-to-image": {"text-to-image"},
                  "image-to-image": {"image-to-image", "inpaint", "edit"}}


@router.get("/v1/images/tasks/{job_id}", response_model=TaskView)
async def image_task(job_id: str, tenant: str = Depends(authenticate),
                     links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    return await gw.reads.read(job_id, tenant, links)


@router.get("/v1/base_models", response_model=BaseModelsAnswer)
async def base_models(inference: bool = Query(True),
                      modalities: Literal["text-to-image", "image-to-image"] | None = Query(None),
                      gw: Gateway = Depends(gateway), tenant: str = Depends(authenticate)):
    wanted = MODALITY_TASKS.get(modalities, set().union(*MODALITY_TASKS.values()))
    catalog = (await gw.resolver.catalog()).values()
    names = [r.hf_model_id.rsplit("/", 1)[-1] for r, reason in catalog
             if (reason is None or not inference) and wanted & set(FAMILIES[r.family].tasks)]
    return BaseModelsAnswer(models=[BaseModelName(model_name=n) for n in dict.fromkeys(names)])
