"""Tasks: one task's view (status, history, result with signed URLs), its events stream, its
cancellation, and a tenant's newest."""

from fastapi import APIRouter, Depends, Header, Query
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from serve_app.api.deps import authenticate, base_url, gateway
from serve_app.api.gateway import Gateway
from serve_app.api.holds import STREAMS
from serve_app.api.reads import MAX_WAIT_S
from serve_app.api.streams import task_events
from serve_app.core.tasks import TaskStatus
from serve_app.wire.schema import ErrorResponse, TaskList, TaskView

router = APIRouter()


@router.get("/v1/tasks", response_model=TaskList)
async def list_tasks(status: TaskStatus | None = Query(None),
                     limit: int = Query(50, ge=1, le=500), tenant: str = Depends(authenticate),
                     links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    tasks = await gw.tasks.list(tenant, status, limit)
    return TaskList(data=[await gw.reads.view(t, links, with_b64=False) for t in tasks])


@router.get("/v1/tasks/{task_id}", response_model=TaskView)
async def get_task(task_id: str,
                   wait: int = Query(0, ge=0, le=MAX_WAIT_S, description=(
                       "long-poll: answer once the task has ended, or after this many seconds")),
                   tenant: str = Depends(authenticate), links: str = Depends(base_url),
                   gw: Gateway = Depends(gateway)):
    return await gw.reads.read(task_id, tenant, links, wait)


@router.post("/v1/tasks/{task_id}/cancel", response_model=TaskView,
             responses={409: {"model": ErrorResponse, "description": "the task has ended"}})
async def cancel_task(task_id: str, tenant: str = Depends(authenticate),
                      links: str = Depends(base_url), gw: Gateway = Depends(gateway)):
    task = await gw.tasks.cancel(task_id, tenant)
    return await gw.reads.view(task, links)


@router.get("/v1/tasks/{task_id}/events", response_class=EventSourceResponse, responses={
    200: {"content": {"text/event-stream": {}}, "description": "status, progress and preview "
          "events, then done with the task view"}})
async def stream_task(task_id: str,
                      last_event_id: str | None = Header(None, alias="Last-Event-ID"),
                      tenant: str = Depends(authenticate), links: str = Depends(base_url),
                      gw: Gateway = Depends(gateway)):
    hold = gw.holds.take(tenant, STREAMS)  # 429 past the tenant's share of open streams
    try:
        task = await gw.tasks.get(task_id, tenant)  # 404 before the stream opens
    except BaseException:
        hold.release()
        raise
    events = task_events(gw, task, tenant, links, last_event_id)
    return EventSourceResponse(gw.holds.streamed(hold, events), ping=10,
                               background=BackgroundTask(hold.release))
