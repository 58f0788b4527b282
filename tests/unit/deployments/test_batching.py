"""The replica's batch queue: what arrives while the device is busy forms the next batch."""

from __future__ import annotations


def test_batch_queue_gathers_what_arrives_while_busy():
    import asyncio

    from deployments.batching import Batcher

    async def scenario():
        batches: list[tuple[str, list]] = []
        release = asyncio.Event()

        async def run(key, items):
            batches.append((key, items))
            if items == ["first"]:
                await release.wait()  # the device is busy with the first call
            if "bad" in items:
                raise RuntimeError("pipeline broke")
            return [f"{key}:{i}" for i in items]

        b = Batcher(run, max_size=3, wait_s=0.05)
        first = asyncio.create_task(b.submit("m1", "first"))
        await asyncio.sleep(0.01)
        assert batches == [("m1", ["first"])]  # from idle, a lone call starts at once
        later = [asyncio.create_task(b.submit(k, i)) for k, i in
                 [("m1", "a"), ("m2", "x"), ("m1", "b"), ("m1", "c"), ("m1", "d")]]
        cancelled = asyncio.create_task(b.submit("m1", "gone"))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        release.set()
        results = await asyncio.gather(first, *later)
        assert results == ["m1:first", "m1:a", "m2:x", "m1:b", "m1:c", "m1:d"]
        # oldest first, one model per batch, at most 3, the cancelled call dropped
        assert batches[1:] == [("m1", ["a", "b", "c"]), ("m2", ["x"]), ("m1", ["d"])]

        failing = [asyncio.create_task(b.submit("m1", i)) for i in ("ok", "bad")]
        outcomes = await asyncio.gather(*failing, return_exceptions=True)
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        assert await b.submit("m1", "after") == "m1:after"  # the queue outlives a failure

    asyncio.run(scenario())


def test_a_shared_call_that_fails_retries_its_tasks_alone_once():
    """One tenant's task that breaks a shared pipeline call fails alone: the call is tried
    again a task at a time, and the others complete; a failure of the whole group (every
    task cancelled) is not retried."""
    import asyncio

    from deployments.batching import run_groups

    calls: list[list[str]] = []

    async def run_group(group):
        calls.append(list(group))
        if "bad" in group:
            raise RuntimeError("pipeline broke")
        return [f"image of {item}" for item in group]

    async def scenario():
        groups = [["a", "bad", "b"], ["c"], ["bad"]]
        out = await run_groups(groups, run_group)
        return {item: out[id(item)] for g in groups for item in g}

    results = asyncio.run(scenario())
    assert results["a"] == "image of a" and results["b"] == "image of b"
    assert results["c"] == "image of c"
    assert isinstance(results["bad"], RuntimeError)
    # the shared call once, then each task alone once; a lone task is not tried twice
    assert calls == [["a", "bad", "b"], ["a"], ["bad"], ["b"], ["c"], ["bad"]]

    calls.clear()

    async def together():
        group = ["x", "bad"]
        out = await run_groups([group], run_group, keep_together=lambda exc: True)
        return [out[id(i)] for i in group]

    assert all(isinstance(o, RuntimeError) for o in asyncio.run(together()))
    assert calls == [["x", "bad"]]
