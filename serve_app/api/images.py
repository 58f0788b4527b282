"""Images: generations and edits, each validate -> submit -> 202 with the task id."""

from fastapi import APIRouter, Depends, Request

from serve_app.api.deps import authenticate, gateway
from serve_app.api.gateway import Gateway, requested_wait
from serve_app.protocol import EditRequest, GenerationRequest, TaskCreated, TaskView

router = APIRouter()

# With `Prefer: wait=N` the answer is the task view: 200 once it ended within N s, else 202.
WAITED = {200: {"model": TaskView, "description": "Prefer: wait, and the task ended in time"}}


@router.post("/v1/images/generations", response_model=TaskCreated, status_code=202,
             responses=WAITED)
async def generations(body: GenerationRequest, request: Request,
                      tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    submitted = await gw.submit_generation(tenant, body, request, wait_s=requested_wait(request))
    return await gw.answer(submitted, request)


@router.post("/v1/images/edits", response_model=TaskCreated, status_code=202,
             responses=WAITED)
async def edits(body: EditRequest, request: Request, tenant: str = Depends(authenticate),
                gw: Gateway = Depends(gateway)):
    submitted = await gw.submit_edit(tenant, body, request, wait_s=requested_wait(request))
    return await gw.answer(submitted, request)
