"""The tables. Each record is kept whole as JSON (`record`) beside the columns it is found by.

`idempotency_keys` and `webhook_deliveries` are created now and filled by the task-control
features (idempotent submissions, webhooks).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

tasks = Table(
    "tasks", metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("family", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("completed_at", Float),
    Column("expired", Boolean, nullable=False, default=False),
    Column("record", JSON, nullable=False),
    Index("ix_tasks_tenant_created", "tenant", "created_at"),
    Index("ix_tasks_status_created", "status", "created_at"),
)

models = Table(
    "models", metadata,
    Column("id", String(128), primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("record", JSON, nullable=False),
)

validations = Table(
    "validations", metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("record", JSON, nullable=False),
)

uploads = Table(
    "uploads", metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("key", Text, nullable=False),
    Column("content_type", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("size", BigInteger),  # as declared when the link was made
    Column("name", String(255)),  # a file sent whole (Replicate's files): its name
    Column("details", JSON),  # and what else its client reads: metadata, checksums
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("body_hash", String(64), nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False, index=True),
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", String(64), primary_key=True),
    Column("task_id", String(64), nullable=False, index=True),
    Column("tenant", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("event", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, index=True),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
)

# instance-wide secrets made on first use (the webhook signing key), so every replica and
# every restart signs with the same key
instance_secrets = Table(
    "instance_secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
