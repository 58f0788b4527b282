"""Task rows: written by the journal, read when a task is no longer in the actor's memory.

Blocking calls: the task actor runs them in threads.
"""

from __future__ import annotations

import functools

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Engine

from serve_app.core.tasks import IN_PROGRESS, QUEUED, Task
from serve_app.db.schema import tasks, webhook_deliveries


def row(task: Task) -> dict:
    return {"id": task.id, "tenant": task.tenant, "family": task.family, "status": task.status,
            "created_at": task.created_at, "updated_at": task.updated_at,
            "completed_at": task.completed_at, "expired": False,
            "record": task.model_dump(mode="json", exclude={
                "queue_position", "preview_image", "webhook_state"})}


@functools.cache
def _upsert_statement(dialect: str):
    """Built once per dialect: building it took longer than the commit it serves (SQLite)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(tasks)
    # An ended task's row is final: nothing (a retried submission included) rewrites it.
    return stmt.on_conflict_do_update(index_elements=["id"], set_={
        c: stmt.excluded[c] for c in ("status", "updated_at", "completed_at", "record")},
        where=tasks.c.completed_at.is_(None))


def upsert(engine: Engine, rows: list[dict], deliveries: list[dict] | None = None) -> None:
    """One transaction: insert new tasks, replace the state of known ones, and add the webhook
    deliveries those changes make (so a task's end and its webhook are stored together)."""
    stmt = _upsert_statement(engine.dialect.name)
    with engine.begin() as conn:
        conn.execute(stmt, rows)
        if deliveries:
            conn.execute(webhook_deliveries.insert(), deliveries)


def load(engine: Engine, task_id: str) -> tuple[Task, bool] | None:
    """(the task, whether retention expired it), or None."""
    with engine.connect() as conn:
        found = conn.execute(select(tasks.c.record, tasks.c.expired)
                             .where(tasks.c.id == task_id)).first()
    return None if found is None else (Task.model_validate(found.record), found.expired)


def unfinished(engine: Engine) -> list[Task]:
    """Every queued or running task, oldest first: the order they were accepted in."""
    with engine.connect() as conn:
        rows = conn.execute(select(tasks.c.record)
                            .where(tasks.c.status.in_([QUEUED, IN_PROGRESS]))
                            .order_by(tasks.c.created_at, tasks.c.id)).all()
    return [Task.model_validate(r.record) for r in rows]


def newest(engine: Engine, tenant: str, status: str | None, limit: int,
           before: tuple[float, str] | None = None) -> list[Task]:
    """The tenant's newest tasks, or those created before `before` (created_at, id): the page
    after the one that ended there."""
    query = (select(tasks.c.record)
             .where(tasks.c.tenant == tenant, tasks.c.expired.is_(False))
             .order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit))
    if status is not None:
        query = query.where(tasks.c.status == status)
    if before is not None:
        created, task_id = before
        query = query.where(or_(tasks.c.created_at < created,
                                and_(tasks.c.created_at == created, tasks.c.id < task_id)))
    with engine.connect() as conn:
        return [Task.model_validate(r.record) for r in conn.execute(query).all()]


def finished_before(engine: Engine, cutoff: float) -> list[Task]:
    with engine.connect() as conn:
        rows = conn.execute(select(tasks.c.record).where(
            tasks.c.completed_at.is_not(None), tasks.c.completed_at < cutoff,
            tasks.c.expired.is_(False))).all()
    return [Task.model_validate(r.record) for r in rows]


def mark_expired(engine: Engine, task_ids: list[str]) -> None:
    """Retention took the images: the row stays (its reads answer 404 expired), without them."""
    with engine.begin() as conn:
        for task_id in task_ids:
            conn.execute(update(tasks).where(tasks.c.id == task_id).values(expired=True))
