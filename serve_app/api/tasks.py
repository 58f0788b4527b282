"""Tasks: one task's view (status, history, result with signed URLs), and a tenant's newest."""

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from serve_app.api.deps import authenticate, gateway
from serve_app.api.gateway import MAX_WAIT_S, Gateway, call
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
async def get_task(task_id: str, request: Request,
                   wait: int = Query(0, ge=0, le=MAX_WAIT_S, description=(
                       "long-poll: answer once the task has ended, or after this many seconds")),
                   tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    return await gw.read_task(task_id, tenant, str(request.base_url), wait)
