"""Connecting: the URL, SQLite's settings, and bringing the schema up to date (Alembic).

The URL is `database.url` (which `TESSERA_DATABASE_URL` sets), else SQLite at
`<data_dir>/tessera.db` in WAL mode, so readers never wait for the writer and a commit is one
append to the log.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def database_url(config) -> str:
    return config.database.url or f"sqlite:///{Path(config.data_dir) / 'tessera.db'}"


def make_engine(url: str, connect_timeout_s: float = 5.0) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_settings(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint+fsync
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # No pre-ping (a round trip before every transaction): after a database restart the first
    # use of a stale connection fails, SQLAlchemy then drops the whole pool, and `run` tries
    # that call once more on a fresh connection, so the first request after an outage works.
    return create_engine(url, pool_size=5, max_overflow=5, pool_recycle=1800,
                         connect_args={"connect_timeout": int(max(1, connect_timeout_s))})


def run(fn, engine: Engine, *args):
    """fn(engine, *args), once more if the connection it used turned out dead (the database
    restarted since it was pooled): the whole pool is dropped by then, and the second try
    connects afresh. Any other error, or a second failure, is raised."""
    from sqlalchemy.exc import DBAPIError

    try:
        return fn(engine, *args)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return fn(engine, *args)


def migrate(engine: Engine, attempts: int = 10) -> None:
    """Apply every Alembic migration not yet applied. Idempotent; when two processes start at
    once (the task actor and the model registry), the loser of the race finds the schema made
    and tries again."""
    import time

    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as connection:
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
            return
        except Exception:
            if attempt == attempts:
                raise
            time.sleep(0.3 * attempt)
