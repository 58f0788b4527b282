"""Idempotency keys: (tenant, key) -> the body's hash and the task it created, for 24 hours.

Blocking calls: the task actor runs them in threads.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from serve_app.db.schema import idempotency_keys as keys

KEEP_S = 24 * 3600


def find(engine: Engine, tenant: str, key: str, now: float) -> tuple[str, str] | None:
    """(body hash, task id) of the key's use within the last 24 h, or None."""
    with engine.connect() as conn:
        found = conn.execute(select(keys.c.body_hash, keys.c.task_id).where(
            keys.c.tenant == tenant, keys.c.key == key,
            keys.c.created_at >= now - KEEP_S)).first()
    return None if found is None else (found.body_hash, found.task_id)


def remember(engine: Engine, tenant: str, key: str, body_hash: str, task_id: str,
             now: float) -> None:
    """Record the key's use (replacing one older than 24 h)."""
    with engine.begin() as conn:
        conn.execute(delete(keys).where(keys.c.tenant == tenant, keys.c.key == key))
        conn.execute(keys.insert().values(tenant=tenant, key=key, body_hash=body_hash,
                                          task_id=task_id, created_at=now))


def forget_older(engine: Engine, now: float) -> int:
    with engine.begin() as conn:
        return conn.execute(delete(keys).where(keys.c.created_at < now - KEEP_S)).rowcount
