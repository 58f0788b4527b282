"""The benchmarks' own accounting."""

from __future__ import annotations

import pytest

# ---------------------------------------------------------------- benchmarks


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="reads /proc (Linux)")
def test_benchmark_cpu_accounting_sees_its_own_work():
    import time

    from loadtests.bench_overhead import process_cpu

    before = process_cpu()["benchmark client"]
    end = time.process_time() + 0.3
    while time.process_time() < end:  # burn 0.3 s of CPU in this process
        pass
    spent = process_cpu()["benchmark client"] - before
    assert 0.25 <= spent <= 1.0
