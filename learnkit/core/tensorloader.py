"""`TensorLoader`: batches that are slices of tensors held in memory — no per-row Python, no collation.

A ratings table (collab) is two integer columns and a float column; a processed tabular table is cat codes,
continuous values and a target. A ``torch.utils.data.DataLoader`` (one ``__getitem__`` per row, then a
collate) spends far more time in Python than such models spend in maths. `TensorLoader` permutes the whole
tensors once per epoch with its own seeded generator (a gather), then yields zero-copy slices; on a GPU the
tensors can live on the GPU (``dl.to(device)``), so a batch never crosses the bus.

It takes the tensors themselves (``TensorLoader(x, y, bs=4)``; ``dl.dataset`` is then a ``TensorDataset``)
or one table object with a ``tensors()`` method, ``to(device)`` and ``len()`` (`learnkit.tabular`'s
``TabularTensors``), which stays ``dl.dataset``.

>>> dl = TensorLoader(torch.arange(10), torch.arange(10.) * 2, bs=4, shuffle=True, seed=0)
>>> len(dl), [b[0].shape[0] for b in dl]
(3, [4, 4, 2])
>>> all(bool((y == 2 * x).all()) for x, y in dl)   # rows stay together
True
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import TensorDataset
from .validation import check_batch_size

__all__ = ["TensorLoader"]


def _tensors_of(dataset: Any) -> tuple[torch.Tensor, ...]:
    """The row tensors of a ``TensorDataset`` (attribute) or of a table with a ``tensors()`` method."""
    t = dataset.tensors
    return tuple(t() if callable(t) else t)


class TensorLoader:
    """Iterate over same-length tensors in batches of ``bs`` rows.

    Args:
        *data: tensors whose first dimension is the row, or one table with ``tensors()``, ``to()`` and ``len()``.
        bs: rows per batch.
        shuffle: draw a new permutation each epoch from a private generator seeded with ``seed`` (the same
            order on every run, independent of the global RNG).
        drop_last: drop the final incomplete batch — only when at least one full batch remains (training uses
            it so that batch-norm never sees a batch of one row; a loader never has zero batches).
        seed: the generator's seed (``None``: a fresh random seed).

    >>> dl = TensorLoader(torch.zeros(5, 2), bs=2, drop_last=True)
    >>> len(dl), len(TensorLoader(torch.zeros(1, 2), bs=2, drop_last=True)), dl.tensors[0].shape
    (2, 1, torch.Size([5, 2]))
    """

    def __init__(self, *data: Any, bs: int = 64, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = 42):
        if not data:
            raise ValueError(f"{type(self).__name__} needs at least one tensor (or one table)")
        if len(data) == 1 and not isinstance(data[0], torch.Tensor):
            if not hasattr(data[0], "tensors"):
                raise TypeError(f"{type(self).__name__} takes tensors or one table with a tensors() method, "
                                f"got {type(data[0]).__name__}")
            dataset = data[0]
        else:
            bad = [type(t).__name__ for t in data if not isinstance(t, torch.Tensor)]
            if bad:
                raise TypeError(f"{type(self).__name__} takes tensors (or one table), got a {bad[0]}; "
                                "pass the batch size as bs=")
            rows = [t.shape[0] for t in data]
            if len(set(rows)) > 1:
                raise ValueError(f"all tensors must have the same number of rows, got {rows}")
            dataset = TensorDataset(*data)
        check_batch_size(bs)
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, bs, shuffle, drop_last
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**62))

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The row tensors, in order."""
        return _tensors_of(self.dataset)

    @property
    def n(self) -> int:
        return len(self.dataset)

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    def to(self, device: str | torch.device) -> "TensorLoader":
        """Move the tensors to ``device`` (in place; the generator stays on the CPU); batches are then made there."""
        if isinstance(self.dataset, TensorDataset):
            self.dataset = TensorDataset(*(t.to(device) for t in self.dataset.tensors))
        else:
            self.dataset = self.dataset.to(device)
        return self

    def __len__(self) -> int:
        n, bs = self.n, self.batch_size
        return n // bs if self.drop_last and n >= bs else -(-n // bs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        tensors = self.tensors
        if self.shuffle:
            perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            tensors = tuple(t.index_select(0, perm) for t in tensors)
        bs = self.batch_size
        for i in range(len(self)):
            yield tuple(t[i * bs: (i + 1) * bs] for t in tensors)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.n} rows, bs={self.batch_size}, shuffle={self.shuffle}, "
                f"batches={len(self)}, device={self.device})")
