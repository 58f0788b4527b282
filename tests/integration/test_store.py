"""The task store on SQLite and on a real PostgreSQL server started here on 127.0.0.1.

The task actor's code runs in-process with a stand-in family handle; `close()` stops an actor
the way its process dying would (nothing more is dispatched or written), and a new one on the
same database is its restart.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from serve_app.core.errors import ServiceUnavailableError
from serve_app.db.engine import make_engine, migrate
from serve_app.tasks.actor import TaskManager
from tests.support.standins import Handle, config, ok, task, until_done


def run(coro):
    return asyncio.run(coro)


def test_migrations_build_exactly_the_schema(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from serve_app.db.schema import metadata

    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # a second start finds the schema up to date
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_a_restarted_actor_runs_what_was_accepted_in_the_original_order(db_url, tmp_path):
    async def main():
        release = asyncio.Event()

        async def held(params, attempt):
            await release.wait()  # the first task occupies the only slot
            return await ok(params, attempt)

        cfg = config(tmp_path, database_url=db_url, max_queued=10)
        first = TaskManager()
        await first.configure(cfg, {"flux": Handle(held)})
        for i, tenant in enumerate("aabab", start=1):
            await first.submit(task(i, tenant))
        end = time.time() + 5
        while (await first.get("t1", "a")).status != "in_progress" and time.time() < end:
            await asyncio.sleep(0.01)
        await first.close()  # the process dies: t1 was running, t2..t5 queued

        handle = Handle(ok)
        second = TaskManager()
        await second.configure(cfg, {"flux": handle})
        views = [await until_done(second, f"t{i}", t) for i, t in enumerate("aabab", start=1)]
        assert [v["status"] for v in views] == ["completed"] * 5  # nothing lost
        assert views[0]["attempts"] == 2  # the interrupted attempt counts
        # the same round-robin order the first actor would have dispatched in, each once
        assert [c["task_id"] for c in handle.calls] == ["t1", "t3", "t2", "t5", "t4"]
        await second.close()
    run(main())


def test_finished_tasks_leave_memory_and_stay_readable(db_url, tmp_path):
    async def main():
        tm = TaskManager()
        await tm.configure(config(tmp_path, database_url=db_url, max_queued=100,
                                  max_queued_per_tenant=100, keep_finished_s=0),
                           {"flux": Handle(ok)})
        await asyncio.gather(*(tm.submit(task(i)) for i in range(40)))
        for i in range(40):
            await until_done(tm, f"t{i}")
        end = time.time() + 5
        while tm.ledger.counts()["in_memory"] and time.time() < end:
            await asyncio.sleep(0.1)
        assert tm.ledger.counts()["in_memory"] == 0  # the watchdog let every finished task go
        view = await tm.get("t7", "a")  # read back from the database
        assert view.status == "completed" and view.result.usage.images == 1
        newest = await tm.list("a", limit=5)
        assert [t.id for t in newest] == [f"t{i}" for i in range(39, 34, -1)]
        stats = await tm.stats()
        assert stats["commits"] < 40 * 3  # submissions and transitions committed in groups
        await tm.close()
    run(main())


def test_the_database_going_away_answers_503_and_loses_nothing(postgres, pg_url, tmp_path):
    url = pg_url

    async def main():
        release = asyncio.Event()

        async def held(params, attempt):
            await release.wait()
            return await ok(params, attempt)

        tm = TaskManager()
        await tm.configure(config(tmp_path, database_url=url, read_wait_s=0.5),
                           {"flux": Handle(held)})
        await tm.submit(task(1))
        await asyncio.sleep(0.2)  # t1 is running
        postgres.stop("immediate")
        try:
            with pytest.raises(ServiceUnavailableError) as refused:
                await tm.submit(task(2))
            assert refused.value.headers["Retry-After"]
            release.set()  # t1 finishes while the database is away
            await asyncio.sleep(0.3)
            with pytest.raises(ServiceUnavailableError):
                await tm.get("t1", "a")  # its completion is not stored yet: not shown
        finally:
            postgres.start()
        view = await until_done(tm, "t1", timeout=30)
        assert view["status"] == "completed"  # recorded once the database came back
        with pytest.raises(Exception, match="not found"):
            await tm.get("t2", "a")  # refused, so never accepted
        await tm.close()
    run(main())


def test_the_first_calls_after_a_database_restart_succeed(postgres, pg_url, tmp_path):
    """Pooled connections die with the server. Once it is back, the next model-registry call
    (what validate-hf and import-hf make) and the next submission succeed at once, not with
    one 503 per stale connection."""
    from serve_app.registry.actor import ModelRegistry

    url = pg_url
    registry = ModelRegistry(url)

    async def main():
        tm = TaskManager()
        await tm.configure(config(tmp_path, database_url=url), {"flux": Handle(ok)})
        await tm.submit(task(1))
        await until_done(tm, "t1")
        assert registry.list("a") == []  # the pool holds a connection now
        postgres.stop("immediate")
        postgres.start()
        assert registry.list("a") == []
        assert registry.find_upload("a", "upl_missing") is None
        await tm.submit(task(2))  # durable: committed before it is accepted
        assert (await until_done(tm, "t2"))["status"] == "completed"
        assert (await tm.get("t1", "a")).status == "completed"
        await tm.close()
    run(main())
