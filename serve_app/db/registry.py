"""Rows of the model registry: imported models, validations, uploads. Blocking calls."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine

from serve_app.db.schema import models, uploads, validations


def put_model(engine: Engine, model_id: str, tenant: str, created_at: float,
              record: dict) -> None:
    with engine.begin() as conn:
        conn.execute(models.insert().values(id=model_id, tenant=tenant, created_at=created_at,
                                            record=record))


def get_model(engine: Engine, model_id: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(select(models.c.record).where(models.c.id == model_id)).first()
    return None if row is None else row.record


def tenant_models(engine: Engine, tenant: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(models.c.record).where(models.c.tenant == tenant)
                            .order_by(models.c.created_at)).all()
    return [r.record for r in rows]


def put_validation(engine: Engine, validation_id: str, tenant: str, created_at: float,
                   record: dict, expire_before: float) -> None:
    with engine.begin() as conn:
        conn.execute(delete(validations).where(validations.c.created_at < expire_before))
        conn.execute(validations.insert().values(id=validation_id, tenant=tenant,
                                                 created_at=created_at, record=record))


def get_validation(engine: Engine, validation_id: str, tenant: str,
                   not_before: float) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(select(validations.c.record).where(
            validations.c.id == validation_id, validations.c.tenant == tenant,
            validations.c.created_at >= not_before)).first()
    return None if row is None else row.record


def put_upload(engine: Engine, upload_id: str, tenant: str, key: str, content_type: str,
               created_at: float, expires_at: float, size: int, name: str | None = None,
               details: dict | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(uploads.insert().values(id=upload_id, tenant=tenant, key=key,
                                             content_type=content_type, created_at=created_at,
                                             expires_at=expires_at, size=size, name=name,
                                             details=details))


def get_file(engine: Engine, upload_id: str, tenant: str) -> dict | None:
    """Every column of the tenant's upload, or None (another tenant's is never found)."""
    with engine.connect() as conn:
        row = conn.execute(select(uploads).where(uploads.c.id == upload_id,
                                                 uploads.c.tenant == tenant)).first()
    return None if row is None else dict(row._mapping)


def delete_upload(engine: Engine, upload_id: str, tenant: str) -> bool:
    with engine.begin() as conn:
        return conn.execute(delete(uploads).where(uploads.c.id == upload_id,
                                                  uploads.c.tenant == tenant)).rowcount > 0


def pending_uploads(engine: Engine, tenant: str, now: float) -> tuple[int, int]:
    """(count, declared bytes) of the tenant's upload links not yet expired."""
    with engine.connect() as conn:
        row = conn.execute(select(func.count(), func.coalesce(func.sum(uploads.c.size), 0))
                           .where(uploads.c.tenant == tenant, uploads.c.expires_at > now)).one()
    return int(row[0]), int(row[1])


def recent(engine: Engine, table: str, tenant: str, since: float) -> int:
    """How many validations or models the tenant made since `since`."""
    t = {"validations": validations, "models": models}[table]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t).where(
            t.c.tenant == tenant, t.c.created_at >= since)).scalar())


def get_upload(engine: Engine, upload_id: str, tenant: str
               ) -> tuple[str, str, int | None] | None:
    """(key, content type, declared size) of the tenant's upload, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(uploads.c.key, uploads.c.content_type, uploads.c.size).where(
            uploads.c.id == upload_id, uploads.c.tenant == tenant)).first()
    return None if row is None else (row.key, row.content_type, row.size)
