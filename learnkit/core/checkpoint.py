"""Atomic writes: a file is written under a temporary name and renamed, so a crash or a full disk
during the write leaves the previous file intact and never a half-written one."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .distributed import is_rank0

__all__ = ["atomic_write", "atomic_torch_save"]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` to ``path`` (same folder, so the rename is atomic).
    Under DDP (torchrun) only rank 0 writes; the other ranks return ``path`` without writing."""
    path = Path(path)
    if not is_rank0():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the folder {path.parent} to save {path.name}: {e.strerror}") from e
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"the folder {path.parent} is not writable; pass another path to save {path.name}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and _disk_full(e, path.parent):
            raise OSError(28, f"no space left on the device while saving {path}; the previous file (if any) is intact") from e
        raise
    return path


def _disk_full(e: Exception, folder: Path) -> bool:
    """Whether a failed write was a full disk: torch.save and safetensors report it as RuntimeError or
    their own error type, so look at the message and at the free space too."""
    if isinstance(e, OSError) and e.errno == 28:
        return True
    if "No space left" in str(e) or "os error 28" in str(e):
        return True
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through `atomic_write`."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
