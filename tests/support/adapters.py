"""The replica's adapter path without Serve, for the unit tier: references to adapter bytes,
jobs, and running them through the server's own grouping and call code (`PipelineCalls`)."""

from __future__ import annotations

import hashlib

from deployments.calls import Job
from serve_app.core.types import AdapterRef, GenerateParams, GenerateRequest

# adapter bytes by sha256: what the replica would read from the store
DATA: dict[str, bytes] = {}


def ref(data: bytes, scale: float = 1.0, path: str = "x") -> AdapterRef:
    sha = hashlib.sha256(data).hexdigest()
    DATA[sha] = data
    return AdapterRef(path=path, scale=scale, sha256=sha, key=f"t/loras/{sha}", size=len(data))


def job(task_id: str, loras=(), seed: int = 1, prompt: str = "a red fox") -> Job:
    params = GenerateParams(prompt=prompt, width=64, height=64, num_inference_steps=2,
                            guidance_scale=3.5, seeds=[seed], loras=list(loras))
    return Job(GenerateRequest(task_id=task_id, tenant="t", model="m", created_at=0.0,
                               params=params))


def run(calls, pipe, *jobs) -> tuple[dict[str, bytes], int]:
    """Each job's image bytes, and how many pipeline calls they took."""
    groups = calls.batch_groups(list(jobs))
    out = {}
    for group in groups:
        for j in group:
            for r in j.params.loras:
                if not calls.adapters.has(r.sha256):
                    calls.adapters.prepare(pipe, r, DATA[r.sha256], "loras[0].path", 256)
        images = calls.run(pipe, group)
        for j, image in zip(group, images, strict=True):
            out[j.task_id] = image.tobytes()
    return out, len(groups)
