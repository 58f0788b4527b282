"""The dispatcher and deadline logic of the task actor, driven with a stand-in handle.

The stand-in replaces only the DeploymentHandle (the network hop to a family replica); the
integration tests drive the same code through Ray and real pipelines.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from ray.exceptions import ActorDiedError

from serve_app.core.errors import (
    ExpiredError,
    QueueFullError,
    RateLimitedError,
    ServiceUnavailableError,
    StorageUnavailableError,
    TaskNotFoundError,
)
from serve_app.tasks.actor import TaskManager
from tests.support.standins import Handle, config, ok, task, until_done, until_webhook


def run(coro):
    return asyncio.run(coro)


def test_completes_and_fails_with_reason(tmp_path):
    async def main():
        async def behaviour(params, attempt):
            if params["task_id"] == "t2":
                raise StorageUnavailableError("store down")
            if params["task_id"] == "t3":
                raise ValueError("boom")
            return await ok(params, attempt)

        tm = TaskManager()
        await tm.configure(config(tmp_path), {"flux": Handle(behaviour)})
        for i in (1, 2, 3):
            await tm.submit(task(i))
        done = [await until_done(tm, f"t{i}") for i in (1, 2, 3)]
        assert done[0]["status"] == "completed"
        assert done[1]["error"] == {"code": "storage_unavailable", "message": "store down"}
        assert done[2]["error"]["code"] == "generation_failed"
        assert "boom" in done[2]["error"]["message"]
    run(main())


def test_deadline_fails_running_task_and_cancels_it(tmp_path):
    async def main():
        async def slow(params, attempt):
            await asyncio.sleep(30)

        handle = Handle(slow)
        tm = TaskManager()
        await tm.configure(config(tmp_path), {"flux": handle})
        await tm.submit(task(1, deadline=0.3))
        view = await until_done(tm, "t1")
        assert view["error"]["code"] == "timeout"
        await asyncio.sleep(0.05)
        assert handle.responses[0].cancelled
    run(main())


def test_queued_task_past_deadline_fails_without_running(tmp_path):
    async def main():
        async def slow(params, attempt):
            await asyncio.sleep(3)
            return await ok(params, attempt)

        handle = Handle(slow)
        tm = TaskManager()
        await tm.configure(config(tmp_path), {"flux": handle})
        await tm.submit(task(1, deadline=10))
        await tm.submit(task(2, deadline=0.5))  # waits behind t1 (one slot)
        view = await until_done(tm, "t2")
        assert view["status"] == "failed" and view["error"]["code"] == "timeout"
        assert (await until_done(tm, "t1"))["status"] == "completed"
        assert [c["task_id"] for c in handle.calls] == ["t1"]
    run(main())


def test_lost_replica_requeues_then_succeeds(tmp_path):
    async def main():
        async def flaky(params, attempt):
            if attempt == 1:
                raise ActorDiedError()
            return await ok(params, attempt)

        tm = TaskManager()
        await tm.configure(config(tmp_path), {"flux": Handle(flaky)})
        await tm.submit(task(1))
        view = await until_done(tm, "t1")
        assert view["status"] == "completed" and view["attempts"] == 2
    run(main())


def test_queue_caps(tmp_path):
    async def main():
        async def slow(params, attempt):
            await asyncio.sleep(5)

        tm = TaskManager()
        await tm.configure(config(tmp_path, 2), {"flux": Handle(slow)})
        await tm.submit(task(1))
        await asyncio.sleep(0.05)  # t1 dispatched, no longer queued
        await tm.submit(task(2))
        await tm.submit(task(3))
        with pytest.raises(RateLimitedError) as info:
            await tm.submit(task(4))
        assert info.value.headers["Retry-After"]
        await tm.submit(task(5, tenant="b"))
        with pytest.raises(QueueFullError):
            await tm.submit(task(6, tenant="c"))
        assert (await tm.get("t2", "a")).queue_position == 0
        assert (await tm.get("t5", "b")).queue_position == 1
    run(main())


def test_retention_sweep_removes_images_and_answers_expired(tmp_path):
    async def main():
        async def writes(params, attempt):
            await tm._store.put_async("a/2026/01/01/t1/0.png", b"png", "image/png")
            return {"images": [{"key": "a/2026/01/01/t1/0.png", "seed": 1}],
                    "width": 64, "height": 64}

        tm = TaskManager()
        await tm.configure(config(tmp_path, retention_days=1), {"flux": Handle(writes)})
        await tm.submit(task(1))
        await until_done(tm, "t1")
        stray = tmp_path / "outputs" / "b" / "old.png"
        stray.parent.mkdir(parents=True)
        stray.write_bytes(b"x")
        assert await tm.sweep() == {"tasks": 0, "objects": 0}
        removed = await tm.sweep(now=time.time() + 2 * 86400)
        assert removed == {"tasks": 1, "objects": 2}
        assert not (tmp_path / "outputs" / "a" / "2026" / "01" / "01" / "t1" / "0.png").exists()
        assert not stray.exists()
        with pytest.raises(ExpiredError):
            await tm.get("t1", "a")
        with pytest.raises(Exception, match="not found"):
            await tm.get("t1", "b")
    run(main())


def test_webhook_deliveries_survive_a_restart(tmp_path):
    """A delivery that failed before the actor died is tried again by the next one, with the
    same webhook-id, until the receiver takes it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.support.api import free_port

    port = free_port()
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            received.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    cfg = config(tmp_path)
    cfg["webhooks"]["backoff_base_s"] = 0.5
    cfg["inputs"]["allow_private_urls"] = True

    async def first_life():
        tm = TaskManager()
        await tm.configure(cfg, {"flux": Handle(ok)})
        hooked = task(1).model_copy(update={"webhook": f"http://127.0.0.1:{port}/hook",
                                            "webhook_events": ["completed"]})
        await tm.submit(hooked)
        await until_done(tm, "t1")
        # the first try meets nobody listening
        state = await until_webhook(tm, "t1", lambda s: s.attempts >= 1)
        assert state.status == "pending" and "Connect" in state.last_error
        await tm.close()

    async def second_life():
        tm = TaskManager()
        await tm.configure(cfg, {"flux": Handle(ok)})
        state = await until_webhook(tm, "t1", lambda s: s.status == "delivered")
        await tm.close()
        return state

    run(first_life())
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        state = run(second_life())
    finally:
        server.shutdown()
    assert state.model_dump() == {"status": "delivered", "attempts": 2, "last_error": None}
    assert len(received) == 1 and received[0]["webhook-id"].startswith("msg_")


def test_a_refused_submission_never_runs_and_is_never_stored(tmp_path):
    """A submission's dispatch overlaps its commit: when the database refuses the commit, the
    dispatch stops, and none of the task's transitions is stored, even once the database is
    back."""
    from serve_app.db import tasks as task_rows

    async def main():
        async def behaviour(params, attempt):
            if params["task_id"] == "t1":
                await asyncio.sleep(5)
            return await ok(params, attempt)

        handle = Handle(behaviour)
        tm = TaskManager()
        await tm.configure(config(tmp_path), {"flux": handle})
        engine = tm.ledger.engine
        with engine.begin() as conn:  # the tasks table is away: every commit fails
            conn.exec_driver_sql("ALTER TABLE tasks RENAME TO tasks_away")
        with pytest.raises(ServiceUnavailableError):
            await tm.submit(task(1))
        await asyncio.sleep(0.05)  # its Started event, had the dispatch gone on
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE tasks_away RENAME TO tasks")
        assert [c["task_id"] for c in handle.calls] == ["t1"]  # dispatched meanwhile...
        assert handle.responses[0].cancelled  # ...and stopped
        await tm.submit(task(2))
        assert (await until_done(tm, "t2"))["status"] == "completed"
        await asyncio.sleep(0.5)  # past the journal's retry of the writes that failed
        assert task_rows.load(engine, "t1") is None
        with pytest.raises(TaskNotFoundError):
            await tm.get("t1", "a")
        await tm.close()
    run(main())


def test_tasks_cancelled_before_their_dispatch_runs_give_back_their_slot(tmp_path):
    """One slot: a task cancelled (or past an instant deadline) between being handed to the
    dispatcher and its dispatch first running must not keep that slot, or the family stops
    for every tenant."""
    async def main():
        tm = TaskManager()
        await tm.configure(config(tmp_path, 100, max_queued=100), {"flux": Handle(ok)})
        dispatcher = tm._dispatchers["flux"]
        for i in range(12):  # instant deadlines
            instant = task(i).model_copy(update={"cancel_at": time.time()})
            await tm.submit(instant)
        for i in range(12, 24):  # cancelled right after the dispatcher took them
            await tm.submit(task(i))
            await asyncio.sleep(0)
            await tm.cancel(f"t{i}", "a")
        await tm.submit(task(99, tenant="b"))
        assert (await until_done(tm, "t99", tenant="b"))["status"] == "completed"
        await asyncio.sleep(0.05)
        assert dispatcher.inflight == {}
        await tm.close()
    run(main())


def test_a_retried_submit_never_overwrites_a_task_that_ended(tmp_path):
    """Ray retries a submit that was in flight when the actor died. If the task it carries
    was accepted, ran, ended and left memory meanwhile, the retry answers the stored task and
    writes nothing."""
    async def main():
        tm = TaskManager()
        await tm.configure(config(tmp_path, keep_finished_s=0.0), {"flux": Handle(ok)})
        original = task(1)  # as Ray keeps the call's argument, serialized, for a retry
        await tm.submit(original.model_copy(deep=True))
        ended = await until_done(tm, "t1")
        await tm.close()

        restarted = TaskManager()  # a new process: nothing in memory
        handle = Handle(ok)
        await restarted.configure(config(tmp_path, keep_finished_s=0.0), {"flux": handle})
        again = await restarted.submit(original)  # Ray's retry of the same call
        assert again.status == "completed"
        await asyncio.sleep(0.2)
        assert handle.calls == []  # it did not run (and bill) again
        assert (await restarted.get("t1", "a")).model_dump() == ended
        await restarted.close()
    run(main())


def test_an_ended_row_is_final_in_the_database(tmp_path):
    from serve_app.db import tasks as task_rows

    async def main():
        tm = TaskManager()
        await tm.configure(config(tmp_path), {"flux": Handle(ok)})
        await tm.submit(task(1))
        await until_done(tm, "t1")
        await asyncio.sleep(0.1)
        engine = tm.ledger.engine
        task_rows.upsert(engine, [task_rows.row(task(1))])  # a queued state, written late
        assert task_rows.load(engine, "t1")[0].status == "completed"
        await tm.close()
    run(main())


def test_a_slow_webhook_receiver_delays_only_its_own_deliveries(tmp_path):
    """Twelve deliveries to a receiver that never answers in time, then one to a quick
    receiver: the quick one arrives while the slow tries are still held, and each slow try
    ends at the total deadline."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from serve_app.tasks.webhooks import PER_RECEIVER

    timeout_s = 3.0
    arrived: dict[str, float] = {}
    slow_started: list[float] = []

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            slow_started.append(time.monotonic())
            time.sleep(2 * timeout_s)

        def log_message(self, *args):
            pass

    class Quick(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            arrived[self.headers["webhook-id"]] = time.monotonic()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (Slow, Quick)]
    for s in servers:
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
    slow_url, quick_url = (f"http://127.0.0.1:{s.server_address[1]}/hook" for s in servers)
    cfg = config(tmp_path, 100, max_queued=100)
    cfg["webhooks"].update(timeout_s=timeout_s, backoff_base_s=30)
    cfg["inputs"]["allow_private_urls"] = True

    async def main():
        tm = TaskManager()
        await tm.configure(cfg, {"flux": Handle(ok)})
        for i in range(12):
            await tm.submit(task(i).model_copy(update={"webhook": slow_url,
                                                       "webhook_events": ["completed"]}))
        for i in range(12):
            await until_done(tm, f"t{i}")
        end = time.monotonic() + 20
        while len(slow_started) < PER_RECEIVER and time.monotonic() < end:
            await asyncio.sleep(0.02)  # the slow receiver holds its share of tries
        await tm.submit(task(99, tenant="b").model_copy(update={
            "webhook": quick_url, "webhook_events": ["completed"]}))
        quick = await until_webhook(tm, "t99", lambda s: s.status == "delivered", tenant="b")
        slow = await until_webhook(tm, "t0", lambda s: s.last_error is not None)
        await tm.close()
        return quick, slow

    try:
        quick, slow = asyncio.run(main())
    finally:
        for s in servers:
            s.shutdown()
    assert len(slow_started) >= PER_RECEIVER
    # Every slow try was still held open when the quick delivery arrived: it waited for none.
    assert arrived and min(arrived.values()) < min(slow_started) + timeout_s
    assert quick.status == "delivered"
    assert slow.status == "pending" and "longer than 3 s" in slow.last_error
