"""A task's images: encoded in its own format and written to the store, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time

from deployments.png import encode_png
from serve_app.core.keys import CONTENT_TYPES, output_key
from serve_app.core.telemetry import tracer
from serve_app.core.types import GenerateRequest, GenerateResult, StoredImage


def encode_image(image, fmt: str) -> bytes:
    if fmt == "png":
        return encode_png(image)
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=92)
    else:
        image.save(buf, format="WEBP", quality=92)
    return buf.getvalue()


@contextlib.contextmanager
def spans(name: str, contexts: list, attributes: dict):
    """One span per task for work its batch shares: each task's trace stays whole."""
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(tracer().start_as_current_span(
                name, context=context, attributes=attributes))
        yield


async def store_outputs(store, request: GenerateRequest, context, images: list,
                        timings: dict[str, float]) -> GenerateResult:
    params = request.params
    content_type = CONTENT_TYPES[params.output_format]
    t0 = time.perf_counter()
    with spans("image.encode", [context], {"tessera.format": params.output_format}):
        encoded = await asyncio.to_thread(
            lambda: [encode_image(im, params.output_format) for im in images])
    encode_ms = (time.perf_counter() - t0) * 1000
    t1 = time.perf_counter()
    stored = []
    with spans("storage.write", [context], {"tessera.objects": len(encoded)}):
        for index, (data, seed) in enumerate(zip(encoded, params.seeds, strict=True)):
            key = output_key(request.tenant, request.task_id, request.created_at, index,
                             params.output_format, request.file_prefix)
            await store.put_async(key, data, content_type)
            stored.append(StoredImage(key=key, seed=seed, bytes=len(data),
                                      content_type=content_type))
    storage_ms = (time.perf_counter() - t1) * 1000
    # Some pipelines choose their own output size (LongCat edits at ~1 MP): report what was
    # made, which is also what usage bills.
    width, height = images[0].size
    return GenerateResult(images=stored, width=width, height=height, timings_ms={
        **timings, "encode": round(encode_ms, 2), "storage": round(storage_ms, 2)})
