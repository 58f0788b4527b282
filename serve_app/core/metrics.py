"""Tessera's metrics, through Ray's metrics API (Prometheus format from each node's agent).

Created lazily per process: Ray metrics can only be made inside a connected worker or driver.
"""

from __future__ import annotations

import functools

LATENCY_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900]
BATCH_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 32]


class _Noop:
    """Stands in where no Ray worker is connected (plain unit tests): records nothing."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self


def m():
    import ray

    return _metrics() if ray.is_initialized() else _Noop()


@functools.cache
def _metrics():
    from ray.util.metrics import Counter, Gauge, Histogram

    class Metrics:
        tasks = Counter("tessera_tasks_total", "tasks entering each status",
                        tag_keys=("status", "family"))
        errors = Counter("tessera_task_errors_total", "failed tasks by error code",
                         tag_keys=("code", "family"))
        images = Counter("tessera_images_total", "images generated (rate() = images/s)",
                         tag_keys=("family",))
        queue_depth = Gauge("tessera_queue_depth", "tasks waiting in the family queue",
                            tag_keys=("family",))
        queue_wait = Histogram("tessera_queue_wait_seconds", "submit to start",
                               boundaries=LATENCY_BUCKETS, tag_keys=("family",))
        generation = Histogram("tessera_generation_seconds", "pipeline call (denoise+decode)",
                               boundaries=LATENCY_BUCKETS, tag_keys=("family",))
        end_to_end = Histogram("tessera_end_to_end_seconds", "submit to completed",
                               boundaries=LATENCY_BUCKETS, tag_keys=("family",))
        batch_size = Histogram("tessera_batch_size", "images per pipeline call",
                               boundaries=BATCH_BUCKETS, tag_keys=("family",))
        cold_start = Histogram("tessera_cold_start_seconds", "model load, optimization and "
                               "warm-up in a replica", boundaries=LATENCY_BUCKETS,
                               tag_keys=("family",))
        storage = Histogram("tessera_storage_seconds", "output store calls",
                            boundaries=LATENCY_BUCKETS, tag_keys=("op",))
        safety_flagged = Counter("tessera_safety_flagged_total", "output images the safety "
                                 "checker flagged", tag_keys=("family",))

    return Metrics
