"""Write to a temporary name, then rename: a killed process never leaves a file that looks whole."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: str | os.PathLike[str], suffix: str = ".part") -> Path:
    """The temporary name used while ``path`` is written (same folder, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}{suffix}")


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path for a file; rename it to ``path`` only if the block succeeds.

    On any exception the temporary file is removed and nothing exists at ``path``.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(final)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder; it replaces ``path`` only if the block succeeds.

    A folder left over from a killed run (``.name.tmp``) is deleted first, so reruns start clean.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
