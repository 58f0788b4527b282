"""The task actor's memory over 10,000 tasks: flat once finished tasks leave it.

    python -m loadtests.bench_memory --output /tmp/tessera-bench/memory [--tasks 10000]

Runs the task actor's own code (`TaskManager`, SQLite store) in this process, with a family
handle that answers at once (the replica is not what is measured), and records the Python heap
the actor holds (tracemalloc) and the tasks it keeps in memory at every 1,000 tasks: once with
`keep_finished_s` 0 (finished tasks are read from the database), once with eviction off, which
keeps every task, as the actor did before the store.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import tracemalloc

from loadtests.common import write_report


async def one_run(tasks: int, keep_finished_s: float, step: int) -> list[dict]:
    from tests.support.standins import Handle, Stream, config, ok, task, until_done

    class Instant(Handle):
        """Answers at once and keeps nothing (the tests' handle records every call)."""

        def remote(self, request):
            return Stream(ok(None, 1))

    from serve_app.tasks.actor import TaskManager

    data = tempfile.mkdtemp(prefix="tessera-mem-")
    tm = TaskManager()
    await tm.configure(config(data, max_queued=tasks, max_queued_per_tenant=tasks,
                              keep_finished_s=keep_finished_s), {"flux": Instant(ok)})
    points = []
    tracemalloc.start()
    for start in range(0, tasks, step):
        ids = range(start, start + step)
        await asyncio.gather(*(tm.submit(task(i)) for i in ids))
        for i in ids:
            await until_done(tm, f"t{i}", timeout=60)
        await asyncio.sleep(1.2)  # one watchdog pass: finished tasks leave memory
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
        points.append({"tasks": start + step, "heap_mib": round(current / 2**20, 2),
                       "in_memory": tm.ledger.counts()["in_memory"]})
    tracemalloc.stop()
    await tm.close()
    return points


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="task actor memory over many tasks")
    p.add_argument("--output", required=True)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--step", type=int, default=1_000)
    args = p.parse_args(argv)
    evicting = asyncio.run(one_run(args.tasks, 0.0, args.step))
    keeping = asyncio.run(one_run(args.tasks, 1e9, args.step))
    lines = ["| tasks | heap MiB (finished tasks leave memory) | tasks in memory | "
             "heap MiB (every task kept) | tasks in memory |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {a['tasks']} | {a['heap_mib']} | {a['in_memory']} | {b['heap_mib']} | "
              f"{b['in_memory']} |" for a, b in zip(evicting, keeping, strict=True)]
    write_report(args.output, "memory", {"evicting": evicting, "keeping": keeping},
                 "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
