"""A replica's batch queue: concurrent calls gathered into batches, one batch running at a time.

Serve's `@serve.batch` forms a new batch every `batch_wait_timeout_s` even while the previous one
is still running (it queues the batches, not the calls), so under load on one device the batches
stay as small as the arrivals in one wait window. Here the next batch is formed only when the
device is free, from everything that queued meanwhile, so a busy replica runs full batches:

- calls with the same key (the multiplexed model id) batch together, oldest first, up to
  `max_size`;
- a batch that is not full waits for more until its oldest call has waited `wait_s`;
- a call reaching an idle replica starts at once: a wait would gather nobody.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable


@dataclass
class _Call:
    key: str
    item: Any
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, run: Callable[[str, list], Awaitable[list]], max_size: int,
                 wait_s: float):
        self._run = run  # (key, items) -> one outcome (a result or an exception) per item
        self.max_size = max_size
        self.wait_s = wait_s
        self._pending: list[_Call] = []
        self._arrival = asyncio.Event()
        self._worker: asyncio.Task | None = None

    async def submit(self, key: str, item: Any) -> Any:
        call = _Call(key, item, asyncio.get_running_loop().create_future())
        self._pending.append(call)
        self._arrival.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._loop())
        return await call.future

    def _ready(self) -> list[_Call]:
        self._pending = [c for c in self._pending if not c.future.done()]  # drop cancelled
        if not self._pending:
            return []
        key = self._pending[0].key
        return [c for c in self._pending if c.key == key][:self.max_size]

    async def _loop(self) -> None:
        idle = True
        while True:
            batch = self._ready()
            if not batch:
                idle = True
                self._arrival.clear()
                await self._arrival.wait()
                continue
            # from idle, a lone call starts now; otherwise wait for a fuller batch
            while not (idle and len(batch) == 1) and len(batch) < self.max_size:
                left = batch[0].arrived + self.wait_s - time.monotonic()
                if left <= 0:
                    break
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), left)
                except asyncio.TimeoutError:
                    pass
                batch = self._ready()
            idle = False
            if not batch:
                continue
            for call in batch:
                self._pending.remove(call)
            try:
                outcomes = await self._run(batch[0].key, [c.item for c in batch])
            except Exception as exc:  # the batch's callers get the error, the loop goes on
                for call in batch:
                    if not call.future.done():
                        call.future.set_exception(exc)
                continue
            for call, outcome in zip(batch, outcomes, strict=True):
                if call.future.done():
                    continue
                # an exception as an outcome fails that call alone
                if isinstance(outcome, BaseException):
                    call.future.set_exception(outcome)
                else:
                    call.future.set_result(outcome)


async def run_groups(groups: list[list], run_group: Callable[[list], Awaitable[list]],
                     keep_together: Callable[[BaseException], bool] = lambda exc: False
                     ) -> dict[int, Any]:
    """Each group's outcomes by id(item): its results, or the exception that ended its call.

    A shared call that fails is tried again one item at a time, once: one tenant's task that
    breaks a call must fail alone, not every task it shared the call with (`keep_together`
    names failures that concern the whole group, such as all of its tasks being cancelled)."""
    outcomes: dict[int, Any] = {}
    for group in groups:
        try:
            results = await run_group(group)
        except Exception as exc:
            if len(group) == 1 or keep_together(exc):
                results = [exc] * len(group)
            else:
                results = []
                for item in group:
                    try:
                        results.extend(await run_group([item]))
                    except Exception as alone:
                        results.append(alone)
        outcomes.update(zip(map(id, group), results, strict=True))
    return outcomes
