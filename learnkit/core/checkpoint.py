"""Checkpoints: ``learn.save``/``learn.load`` (from `CheckpointMixin`), and the atomic writes under them.

A file is written under a temporary name and renamed, so a crash or a full disk during the write leaves the
previous file intact and never a half-written one. The new file keeps the permission bits of the file it
replaces (or gets the umask's, like ``open``), and the temporary files that a killed writer left behind are
removed by the next successful write.

>>> import tempfile, torch
>>> from torch.utils.data import TensorDataset
>>> ds = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
>>> learn = Learner(DataLoaders.from_dsets(ds, ds, bs=4, device="cpu"), torch.nn.Linear(2, 1),
...                 loss_func=MSELossFlat(), path=tempfile.mkdtemp(), progress=False)
>>> path = learn.save("start")
>>> path.relative_to(learn.path).as_posix()
'models/start.pth'
>>> learn.load("start") is learn
True
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .paths import expand_path, write_or_rescue
from .process_group import distrib_barrier, is_rank0

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["atomic_write", "atomic_torch_save", "CheckpointMixin"]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` to ``path`` (same folder, so the rename is atomic).
    Under DDP (torchrun) only rank 0 writes; the other ranks return ``path`` without writing.

    >>> path = Path(tempfile.mkdtemp()) / "notes.txt"
    >>> atomic_write(path, lambda tmp: tmp.write_text("all or nothing")) == path  # write() gets a temporary path
    True
    >>> path.read_text()
    'all or nothing'
    """
    path = Path(path)
    if not is_rank0():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the folder {path.parent} to save {path.name}: {e.strerror}") from e
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"the folder {path.parent} is not writable; pass another path to save {path.name}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _target_mode(path))  # mkstemp makes 0600 whatever the umask
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and _disk_full(e, path.parent):
            raise OSError(28, f"no space left on the device while saving {path}; the previous file (if any) is intact") from e
        raise
    _remove_stale_temps(path)
    return path


def _target_mode(path: Path) -> int:
    """The permission bits the file should end with: those of the file it replaces, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` files left by writers of ``path`` that are no longer running."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\..*\.tmp$")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for p in entries:
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)


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
    """``torch.save`` through `atomic_write`.

    >>> path = atomic_torch_save({"w": torch.ones(2)}, Path(tempfile.mkdtemp()) / "w.pth")
    >>> torch.load(path, weights_only=True)
    {'w': tensor([1., 1.])}
    """
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


class CheckpointMixin:
    """``save`` and ``load`` of `Learner`: the weights and optimizer state, as a ``torch.save`` file. (A resumable
    run is `learnkit.core.callbacks.checkpoint`; a learner for inference elsewhere is `learnkit.core.export`.)"""

    def _ckpt_path(self: Learner, name: str | Path) -> Path:
        p = expand_path(name)
        if p.suffix not in (".pth", ".pt", ".safetensors"):  # an explicit suffix is kept: "x.safetensors" stays
            p = p.with_name(p.name + ".pth")
        return p if p.is_absolute() or p.parent != Path(".") else self.path / self.model_dir / p

    def save(self: Learner, name: str | Path, with_opt: bool = True) -> Path:
        """Save the weights (and optimizer state) to ``path/model_dir/name.pth``; loads back with
        ``weights_only=True`` (tensors and numbers only, no pickled code)."""
        path = self._ckpt_path(name)
        state = {"model": self.model.state_dict()}
        if with_opt and self.opt is not None:
            state["opt"] = self.opt.state_dict()
        return write_or_rescue(path, lambda p: atomic_torch_save(state, p), f"the model ({path.name})")

    def load(self: Learner, name: str | Path, with_opt: bool = True, strict: bool = True) -> Learner:
        """Load weights (and optimizer state, if saved) written by `save`."""
        path = self._ckpt_path(name)
        distrib_barrier()  # under DDP only rank 0 writes checkpoints: wait until it has
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {path}")
        if path.suffix == ".safetensors":
            raise ValueError(f"{path} is a safetensors file (an export or a resume checkpoint), not a file written by "
                             "learn.save: load an export with load_learner(path), continue a run with "
                             "learn.fit(..., resume=path)")
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"], strict=strict)
        if with_opt and "opt" in state:
            if self.opt is None:
                self.create_opt()
            saved, have = len(state["opt"].get("param_groups", [])), len(self.opt.param_groups)
            if saved != have:
                raise ValueError(f"the optimizer state in {path} has {saved} parameter groups, this learner's optimizer "
                                 f"has {have} (another splitter, or wd_bn_bias: with wd_bn_bias=False, the default, "
                                 "normalisation and bias parameters get param groups of their own, which files saved "
                                 "before that lack): load(..., with_opt=False) for the weights only, or build the "
                                 "Learner with wd_bn_bias=True")
            self.opt.load_state_dict(state["opt"])
        return self
