"""Webhook deliveries (one row per task and event, its attempts and next try) and the
instance's signing key. Blocking calls: the task actor runs them in threads.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from serve_app.db.schema import instance_secrets
from serve_app.db.schema import webhook_deliveries as deliveries

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def new(delivery_id: str, task_id: str, tenant: str, url: str, event: str, now: float) -> dict:
    """A delivery row, due now (the journal inserts it with the task's change)."""
    return dict(id=delivery_id, task_id=task_id, tenant=tenant, url=url, event=event,
                status=PENDING, attempts=0, next_attempt_at=now, last_error=None, created_at=now)


def due(engine: Engine, now: float, limit: int = 50) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(deliveries).where(
            deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at).limit(limit)).mappings().all()
    return [dict(r) for r in rows]


def claim(engine: Engine, delivery_ids: list[str], until: float) -> None:
    """Lease deliveries being tried (or put off) until `until`: the next scan passes them
    over, and a process that dies mid-try leaves them due again once the lease ends."""
    if not delivery_ids:
        return
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(delivery_ids))
                     .values(next_attempt_at=until))


def next_due(engine: Engine) -> float | None:
    with engine.connect() as conn:
        return conn.execute(select(deliveries.c.next_attempt_at)
                            .where(deliveries.c.status == PENDING)
                            .order_by(deliveries.c.next_attempt_at).limit(1)).scalar()


def record(engine: Engine, delivery_id: str, status: str, attempts: int,
           next_attempt_at: float | None, last_error: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(
            status=status, attempts=attempts, next_attempt_at=next_attempt_at,
            last_error=last_error))


def latest(engine: Engine, task_id: str) -> dict | None:
    """The task's newest delivery: what its view shows."""
    with engine.connect() as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.task_id == task_id)
                           .order_by(deliveries.c.created_at.desc()).limit(1)).mappings().first()
    return None if row is None else dict(row)


def signing_key(engine: Engine) -> str:
    """The instance's webhook signing key, made once (the first writer wins a race)."""
    name = "webhook_signing_key"
    with engine.connect() as conn:
        found = conn.execute(select(instance_secrets.c.value)
                             .where(instance_secrets.c.name == name)).scalar()
    if found is not None:
        return found
    try:
        with engine.begin() as conn:
            conn.execute(instance_secrets.insert().values(name=name,
                                                          value=secrets.token_hex(32)))
    except IntegrityError:
        pass
    return signing_key(engine)
