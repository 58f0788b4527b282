"""Tasks: one task's view (status, history, result with signed URLs), its events stream, its
cancellation, and a tenant's newest."""

from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from serve_app.api.deps import authenticate, gateway
from serve_app.api.gateway import MAX_WAIT_S, Gateway, call
from serve_app.api.holds import STREAMS
from serve_app.api.streams import task_events
from serve_app.protocol import ErrorResponse, TaskList, TaskStatus, TaskView

router = APIRouter()


@router.get("/v1/tasks", response_model=TaskList)
async def list_tasks(request: Request, status: TaskStatus | None = Query(None),
                     limit: int = Query(50, ge=1, le=500),
                     tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    tasks = await call(gw.tasks.list.remote(tenant, status, limit))
    return TaskList(data=[await gw.task_view(t, gw.base_url_for(request), with_b64=False)
                          for t in tasks])


@router.get("/v1/tasks/{task_id}", response_model=TaskView)
async def get_task(task_id: str, request: Request,
                   wait: int = Query(0, ge=0, le=MAX_WAIT_S, description=(
                       "long-poll: answer once the task has ended, or after this many seconds")),
                   tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    return await gw.read_task(task_id, tenant, gw.base_url_for(request), wait)


@router.post("/v1/tasks/{task_id}/cancel", response_model=TaskView,
             responses={409: {"model": ErrorResponse, "description": "the task has ended"}})
async def cancel_task(task_id: str, request: Request, tenant: str = Depends(authenticate),
                      gw: Gateway = Depends(gateway)):
    task = await call(gw.tasks.cancel.remote(task_id, tenant))
    return await gw.task_view(task, gw.base_url_for(request))


@router.get("/v1/tasks/{task_id}/events", response_class=EventSourceResponse, responses={
    200: {"content": {"text/event-stream": {}}, "description": "status, progress and preview "
          "events, then done with the task view"}})
async def stream_task(task_id: str, request: Request,
                      last_event_id: str | None = Header(None, alias="Last-Event-ID"),
                      tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    hold = gw.holds.take(tenant, STREAMS)  # 429 past the tenant's share of open streams
    try:
        task = await call(gw.tasks.get.remote(task_id, tenant))  # 404 before the stream opens
    except BaseException:
        hold.release()
        raise
    events = task_events(gw, task, tenant, gw.base_url_for(request), last_event_id)
    return EventSourceResponse(gw.holds.streamed(hold, events), ping=10,
                               background=BackgroundTask(hold.release))
