"""Tasks: one task's view (status, history, result with signed URLs), and a tenant's newest."""

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from serve_app.api.deps import authenticate, gateway
from serve_app.api.gateway import Gateway, call
from serve_app.protocol import TaskList, TaskView

router = APIRouter()


@router.get("/v1/tasks", response_model=TaskList)
async def list_tasks(request: Request,
                     status: Literal["queued", "in_progress", "completed", "failed"] | None =
                     Query(None), limit: int = Query(50, ge=1, le=500),
                     tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    tasks = await call(gw.tasks.list.remote(tenant, status, limit))
    return TaskList(data=[await gw.task_view(t, str(request.base_url), with_b64=False)
                          for t in tasks])


@router.get("/v1/tasks/{task_id}", response_model=TaskView)
async def get_task(task_id: str, request: Request, tenant: str = Depends(authenticate),
                   gw: Gateway = Depends(gateway)):
    task = await call(gw.tasks.get.remote(task_id, tenant))
    return await gw.task_view(task, str(request.base_url))
