"""`PresizedCache`: decoded, presized items in one memory-mapped ``uint8`` file that every loader worker shares.

With ``cache=True`` a loader keeps, for each item, the output of its decoding and deterministic item
transforms (e.g. ``Resize(224)``): the first epoch fills the file as the workers meet the items (no pass
before the first batch), later epochs read it instead of decoding. The file lives in a temporary folder
(``$TMPDIR``) and is deleted with the cache. It needs a fixed output size (a ``Resize`` first) and the disk
space; otherwise it raises an error saying so, it is never dropped silently. ``dls.summary()`` shows it.

>>> c = PresizedCache(3, (2, 2))
>>> c.get(1) is None
True
>>> c.put(1, torch.ones(2, 2, dtype=torch.uint8)); c.get(1).sum().item(), c.n_filled
(4, 1)
"""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["PresizedCache", "presized_cache"]


class PresizedCache:
    """``n`` arrays of ``shape`` (``uint8``) in a memory-mapped file, with a filled flag per item; safe to share
    with worker processes (each maps the file itself)."""

    def __init__(self, n: int, shape: Sequence[int], folder: str | None = None):
        self.n, self.shape = n, tuple(int(s) for s in shape)
        self.nbytes = n * int(np.prod(self.shape))
        folder = folder or tempfile.gettempdir()
        free = shutil.disk_usage(folder).free
        if self.nbytes > 0.9 * free:
            raise OSError(f"cache=True needs {self.nbytes / 2**30:.1f} GiB in {folder} but only {free / 2**30:.1f} GiB "
                          "are free: set TMPDIR to a larger disk, use a smaller Resize, or pass cache=False")
        self.dir = tempfile.mkdtemp(prefix="learnkit-cache-", dir=folder)
        self.path = os.path.join(self.dir, "items.u8")
        np.memmap(self.path, dtype=np.uint8, mode="w+", shape=(max(1, n), *self.shape)).flush()
        np.memmap(self.path + ".flags", dtype=np.uint8, mode="w+", shape=(max(1, n),)).flush()
        weakref.finalize(self, shutil.rmtree, self.dir, True)
        self._maps: tuple | None = None

    def _open(self) -> tuple[np.memmap, np.memmap]:
        if self._maps is None:  # each process maps the file on first use (never pickled)
            self._maps = (np.memmap(self.path, dtype=np.uint8, mode="r+", shape=(max(1, self.n), *self.shape)),
                          np.memmap(self.path + ".flags", dtype=np.uint8, mode="r+", shape=(max(1, self.n),)))
        return self._maps

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}

    def get(self, i: int) -> torch.Tensor | None:
        data, flags = self._open()
        return torch.from_numpy(np.array(data[i])) if flags[i] else None

    def put(self, i: int, x: torch.Tensor) -> None:
        if tuple(x.shape) != self.shape or x.dtype != torch.uint8:
            raise ValueError(f"cache=True needs every item to have one size and dtype after the fixed item transforms "
                             f"({self.shape} uint8), got {tuple(x.shape)} {x.dtype}; put a Resize first or pass "
                             "cache=False")
        data, flags = self._open()
        data[i] = x.numpy()
        flags[i] = 1  # written after the data: a reader never sees a half-written item as filled

    @property
    def n_filled(self) -> int:
        return int(self._open()[1].sum())

    def __repr__(self) -> str:
        return (f"PresizedCache({self.n} x {list(self.shape)} uint8, {self.nbytes / 2**20:.0f} MiB memory-mapped at "
                f"{self.path}, {self.n_filled} filled)")


def presized_cache(enabled: bool | None) -> Any:
    """A cache factory for `DataBlock.datasets`: ``None`` when ``enabled`` is false, else a function that sizes a
    `PresizedCache` for a dataset from its first item (its only up-front decode)."""
    if not enabled:
        return None

    def make(ds: Any) -> PresizedCache | None:
        if len(ds) == 0:
            return None
        if ds.n_fixed == 0 or ds.tfm_block is None:
            raise ValueError("cache=True caches the output of the fixed item transforms, but there are none (or they "
                             "come after a random one): add item_tfms=Resize(...) first, or pass cache=False")
        if getattr(ds, "points_block", None) is not None:
            raise ValueError("cache=True keeps presized images but not their key points (PointBlock); pass cache=False")
        first = ds.pack(ds.walk(0, cache_fill=False))
        return PresizedCache(len(ds), tuple(first.shape))
    return make
