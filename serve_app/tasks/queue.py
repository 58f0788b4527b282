"""The per-family queue: one FIFO per tenant, tenants served round-robin (fairness)."""

from __future__ import annotations

import asyncio
import collections


class FairQueue:
    """Per-family queue: one FIFO per tenant, tenants served round-robin."""

    def __init__(self):
        self._by_tenant: collections.OrderedDict[str, collections.deque[str]] = (
            collections.OrderedDict())
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_tenant.values())

    def tenant_depth(self, tenant: str) -> int:
        return len(self._by_tenant.get(tenant, ()))

    def push(self, tenant: str, task_id: str, front: bool = False) -> None:
        q = self._by_tenant.setdefault(tenant, collections.deque())
        q.appendleft(task_id) if front else q.append(task_id)
        self.changed.set()

    def pop(self) -> str | None:
        for tenant in list(self._by_tenant):
            q = self._by_tenant[tenant]
            if q:
                task_id = q.popleft()
                self._by_tenant.move_to_end(tenant)  # next turn goes to the next tenant
                if not q:
                    del self._by_tenant[tenant]
                return task_id
            del self._by_tenant[tenant]
        return None

    def remove(self, tenant: str, task_id: str) -> None:
        q = self._by_tenant.get(tenant)
        if q is not None and task_id in q:
            q.remove(task_id)

    def position(self, tenant: str, task_id: str) -> int | None:
        """How many tasks round-robin dispatches before this one (0 = next)."""
        q = self._by_tenant.get(tenant)
        if q is None or task_id not in q:
            return None
        index = q.index(task_id)
        ahead = index
        for other, oq in self._by_tenant.items():
            if other == tenant:
                continue
            # tenants before ours in rotation order get one more turn at our index
            before = list(self._by_tenant).index(other) < list(self._by_tenant).index(tenant)
            ahead += min(len(oq), index + (1 if before else 0))
        return ahead
