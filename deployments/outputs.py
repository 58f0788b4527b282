"""A task's images: encoded in its own format and written to the store, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time

from deployments.png import encode_png
from serve_app.core.keys import CONTENT_TYPES, output_key
from serve_app.core.metrics import m
from serve_app.core.telemetry import tracer
from serve_app.core.types import GenerateRequest, GenerateResult, SafetyReport, StoredImage

logger = logging.getLogger("tessera.family")


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
                        timings: dict[str, float], flags: list[bool | None] | None = None,
                        safety: SafetyReport | None = None) -> GenerateResult:
    """The task's images (as the safety checker left them, with its `flags`) encoded and
    written; its result event."""
    params = request.params
    flags = flags or [None] * len(images)
    fmt, content_type = params.output_format, CONTENT_TYPES[params.output_format]
    keys = [output_key(request.tenant, request.task_id, request.created_at, index, fmt,
                       request.file_prefix) for index in range(len(images))]

    def encode_and_write() -> tuple[list[bytes], list[float], float]:
        """Both steps in one worker thread: for a small image the hops to a thread cost more
        than the work. Returns the files, the seconds of each write that succeeded and the
        encoding ms; a write that fails is left to put_async, which retries with backoff."""
        t0 = time.perf_counter()
        with spans("image.encode", [context], {"tessera.format": fmt}):
            encoded = [encode_image(im, fmt) for im in images]
        encode_ms = (time.perf_counter() - t0) * 1000
        writes: list[float] = []
        with spans("storage.write", [context], {"tessera.objects": len(encoded)}):
            try:
                for key, data in zip(keys, encoded, strict=True):
                    started = time.perf_counter()
                    store.put(key, data, content_type)
                    writes.append(time.perf_counter() - started)
            except Exception as exc:
                logger.warning("storage write %s failed, retrying: %s", keys[len(writes)], exc)
        return encoded, writes, encode_ms

    t0 = time.perf_counter()
    encoded, writes, encode_ms = await asyncio.to_thread(encode_and_write)
    for seconds in writes:
        m().storage.observe(seconds, tags={"op": "put"})
    if len(writes) < len(keys):
        with spans("storage.write", [context], {"tessera.objects": len(keys) - len(writes)}):
            for key, data in zip(keys[len(writes):], encoded[len(writes):], strict=True):
                await store.put_async(key, data, content_type)
    storage_ms = (time.perf_counter() - t0) * 1000 - encode_ms
    stored = [StoredImage(key=key, seed=seed, bytes=len(data), content_type=content_type,
                          nsfw=flag)
              for key, seed, data, flag in zip(keys, params.seeds, encoded, flags, strict=True)]
    # Some pipelines choose their own output size (LongCat edits at ~1 MP): report what was
    # made, which is also what usage bills.
    width, height = images[0].size
    return GenerateResult(images=stored, width=width, height=height, safety=safety, timings_ms={
        **timings, "encode": round(encode_ms, 2), "storage": round(storage_ms, 2)})
