"""The journal: a reader waits until the task's newest change is committed."""

from __future__ import annotations

import asyncio

from serve_app.core.tasks import IN_PROGRESS
from serve_app.db import tasks as task_rows
from serve_app.db.engine import make_engine, migrate
from serve_app.tasks.journal import Journal
from tests.support.standins import task


def test_a_change_made_while_a_reader_waits_is_committed_before_it_reads(tmp_path):
    """The task starts while its submission is being committed and a reader waits for that
    commit: the reader is let through only once the start is stored too, so what it then
    reads in memory is what the database holds."""
    engine = make_engine(f"sqlite:///{tmp_path / 'tessera.db'}")
    migrate(engine)

    async def main():
        journal = Journal(engine)
        t = task(1)
        journal.save(t, durable=True)
        reader = asyncio.create_task(journal.settled(t.id, 10.0))
        await asyncio.sleep(0)  # the submission's commit is under way; the reader waits on it
        t.transition(IN_PROGRESS)
        journal.save(t)
        await reader
        stored = task_rows.load(engine, t.id)[0].status
        journal.worker.cancel()
        return stored

    assert asyncio.run(main()) == IN_PROGRESS
