"""Local paths a tenant may name: only directories inside the models directory, checked after
symlinks and `..` are resolved, so a tenant learns nothing of the server's other files."""

from __future__ import annotations

from pathlib import Path


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL byte: not a dir
        return False


def models_dir_path(model_id: str, models_dir: Path) -> Path | None:
    """The directory `model_id` names inside models_dir (relative to it, or absolute), with
    symlinks and `..` resolved before the check; None for anything else."""
    try:
        root = models_dir.resolve()
        given = Path(model_id)
        resolved = (given if given.is_absolute() else root / given).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if resolved == root or not resolved.is_relative_to(root) or not _is_dir(resolved):
        return None
    return resolved
