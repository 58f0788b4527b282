"""Images: generations, edits and upscales, each validate -> submit -> 202 with the task id
(or, with `Prefer: wait=N`, the task view once it ended)."""

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from serve_app.api.deps import authenticate, gateway, request_options
from serve_app.api.gateway import Gateway
from serve_app.api.submit import RequestOptions, Submitted
from serve_app.core.tasks import TERMINAL
from serve_app.wire.schema import (
    EditRequest,
    GenerationRequest,
    TaskCreated,
    TaskView,
    UpscaleRequest,
)

router = APIRouter()

# With `Prefer: wait=N` the answer is the task view: 200 once it ended within N s, else 202.
WAITED = {200: {"model": TaskView, "description": "Prefer: wait, and the task ended in time"}}


@router.post("/v1/images/generations", response_model=TaskCreated, status_code=202,
             responses=WAITED)
async def generations(body: GenerationRequest, tenant: str = Depends(authenticate),
                      opts: RequestOptions = Depends(request_options),
                      gw: Gateway = Depends(gateway)):
    submitted = await gw.submitter.generation(tenant, body, opts, wait_s=opts.wait_s)
    return await answer(gw, submitted, opts)


@router.post("/v1/images/edits", response_model=TaskCreated, status_code=202,
             responses=WAITED)
async def edits(body: EditRequest, tenant: str = Depends(authenticate),
                opts: RequestOptions = Depends(request_options),
                gw: Gateway = Depends(gateway)):
    submitted = await gw.submitter.edit(tenant, body, opts, wait_s=opts.wait_s)
    return await answer(gw, submitted, opts)


@router.post("/v1/images/upscale", response_model=TaskCreated, status_code=202,
             responses=WAITED)
async def upscale(body: UpscaleRequest, tenant: str = Depends(authenticate),
                  opts: RequestOptions = Depends(request_options),
                  gw: Gateway = Depends(gateway)):
    submitted = await gw.submitter.upscale(tenant, body, opts, wait_s=opts.wait_s)
    return await answer(gw, submitted, opts)


async def answer(gw: Gateway, submitted: Submitted, opts: RequestOptions):
    """202 with the task id; when it waited, the task view once it ended (200) or as it was
    after N seconds (202, with Location)."""
    if submitted.wait_s is None:
        return submitted.created
    view = await gw.reads.view(submitted.task, opts.base_url)
    headers = {"Preference-Applied": f"wait={submitted.wait_s}"}
    if view.status not in TERMINAL:
        headers["Location"] = f"{opts.base_url}v1/tasks/{submitted.task_id}"
    return JSONResponse(view.model_dump(mode="json"), headers=headers,
                        status_code=202 if "Location" in headers else 200)
