"""Storing a task's outputs."""

from __future__ import annotations

from serve_app.core.types import GenerateParams


def test_outputs_are_stored_when_a_first_write_fails(tmp_path):
    """Encoding and the first write share a worker thread; a write that fails there is retried
    by the store's own retry loop, and every image still lands under its key."""
    import asyncio
    import io
    import time

    from PIL import Image

    from deployments.outputs import store_outputs
    from serve_app.core.storage import LocalDiskStore
    from serve_app.core.types import GenerateRequest

    class BusyOnce(LocalDiskStore):
        failures = 1

        def put(self, key, data, content_type):
            if self.failures:
                self.failures -= 1
                raise OSError("disk busy")
            super().put(key, data, content_type)

    store = BusyOnce(tmp_path / "out", tmp_path / "secret", None)
    store.backoff_s = 0.01
    params = GenerateParams(prompt="p", width=8, height=8, num_inference_steps=1,
                            guidance_scale=None, seeds=[4, 5])
    request = GenerateRequest(task_id="task_1", tenant="a", model="m", created_at=time.time(),
                              params=params)
    images = [Image.new("RGB", (8, 8), color) for color in ("red", "blue")]
    result = asyncio.run(store_outputs(store, request, None, images, {"inference": 1.0}))
    assert [im.seed for im in result.images] == [4, 5] and store.failures == 0
    assert [Image.open(io.BytesIO(store.get(im.key))).getpixel((0, 0))
            for im in result.images] == [(255, 0, 0), (0, 0, 255)]
    assert [im.bytes for im in result.images] == [len(store.get(im.key)) for im in result.images]
    assert set(result.timings_ms) == {"inference", "encode", "storage"}
