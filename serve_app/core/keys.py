"""Object keys and content types: where each kind of object lives in the store, and as what.

    outputs   <tenant>/<yyyy>/<mm>/<dd>/<task_id>/<index>.<ext>
    inputs    <tenant>/inputs/<task_id>/<name>.png        (edit inputs, kept beside the task)
    uploads   <tenant>/uploads/<upload_id>.<ext>

Every key starts with its tenant, so one tenant's id can never name another's object.
"""

from __future__ import annotations

import re
import time
from typing import get_args

from serve_app.core.errors import NotFoundError
from serve_app.core.types import OutputFormat

# output format -> (content type, file extension)
FORMATS: dict[str, tuple[str, str]] = {"png": ("image/png", "png"),
                                       "jpeg": ("image/jpeg", "jpg"),
                                       "webp": ("image/webp", "webp")}
assert set(FORMATS) == set(get_args(OutputFormat))
CONTENT_TYPES = {fmt: ctype for fmt, (ctype, _) in FORMATS.items()}
# what an upload may be: content type -> extension
UPLOAD_TYPES = {ctype: ext for ctype, ext in FORMATS.values()}
_BY_EXTENSION = {ext: ctype for ctype, ext in FORMATS.values()} | {"jpeg": "image/jpeg"}

_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def content_type_for(key: str) -> str:
    return _BY_EXTENSION.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def check_key(key: str) -> str:
    """A key safe to use as a path: plain segments, no `..`; otherwise it names nothing."""
    if not _KEY_RE.match(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise NotFoundError(f"no such file: {key}", param="key")
    return key


def output_key(tenant: str, task_id: str, created_at: float, index: int, fmt: str,
               prefix: str = "") -> str:
    day = time.strftime("%Y/%m/%d", time.gmtime(created_at or time.time()))
    return f"{tenant}/{day}/{task_id}/{prefix}{index}.{FORMATS[fmt][1]}"


def input_key(tenant: str, task_id: str, name: str) -> str:
    return f"{tenant}/inputs/{task_id}/{name}.png"


def upload_key(tenant: str, upload_id: str, content_type: str) -> str:
    return f"{tenant}/uploads/{upload_id}.{UPLOAD_TYPES[content_type]}"
