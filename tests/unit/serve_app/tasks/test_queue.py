"""The per-family fair queue."""

from __future__ import annotations

from serve_app.tasks.queue import FairQueue


def test_fair_queue_round_robin_and_positions():
    q = FairQueue()
    for i in range(4):
        q.push("big", f"b{i}")
    q.push("small", "s0")
    assert q.position("small", "s0") == 1
    assert q.position("big", "b2") == 3
    order = [q.pop() for _ in range(5)]
    assert order == ["b0", "s0", "b1", "b2", "b3"]
    assert q.pop() is None and len(q) == 0
