"""The processed table as tensors (`TabularTensors`) and a loader that slices it (`TabularLoader`).

Why not a ``torch.utils.data.DataLoader``: a per-row ``Dataset`` plus ``collate`` costs a Python call
per row and a ``torch.stack`` per batch; here the whole table is three tensors and a batch is a slice.
A shuffled epoch is one gather of the whole table by a permutation (drawn from the loader's own seeded
generator), then zero-copy slices. On CUDA the tensors can live on the GPU (``TabularDataLoaders.to``),
so batches are never copied from the host.

>>> import torch
>>> t = TabularTensors(torch.arange(10).reshape(5, 2), torch.ones(5, 1), torch.tensor([0, 1, 0, 1, 1]))
>>> dl = TabularLoader(t, bs=2)
>>> len(dl), [b[0].shape[0] for b in dl]
(3, [2, 2, 1])
"""
from __future__ import annotations

import torch

from ..core.tensorloader import TensorLoader

__all__ = ["TabularTensors", "TabularLoader"]


class TabularTensors:
    """Cat codes ``int64 [N, n_cat]``, continuous values ``float32 [N, n_cont]`` and an optional target.

    Indexing gives one row as a tuple ``(cats, conts[, y])``, so it also works as a map-style dataset.

    >>> t = TabularTensors(torch.tensor([[1], [2], [1]]), torch.tensor([[0.5], [-1.0], [0.2]]), torch.tensor([0, 1, 0]))
    >>> t, t[1], len(t.subset(slice(0, 2)))
    (TabularTensors(rows=3, n_cat=1, n_cont=1, labelled=True), (tensor([2]), tensor([-1.]), tensor(1)), 2)
    """

    def __init__(self, cats: torch.Tensor, conts: torch.Tensor, ys: torch.Tensor | None = None):
        if cats.ndim != 2 or conts.ndim != 2:
            raise ValueError(f"cats and conts must be 2-d [rows, columns], got {tuple(cats.shape)} and "
                             f"{tuple(conts.shape)}")
        n = cats.shape[0]
        if conts.shape[0] != n or (ys is not None and ys.shape[0] != n):
            raise ValueError(f"cats, conts and ys must have as many rows: {n}, {conts.shape[0]}, "
                             f"{None if ys is None else ys.shape[0]}")
        self.cats, self.conts, self.ys = cats, conts, ys

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.cats, self.conts) if self.ys is None else (self.cats, self.conts, self.ys)

    def __len__(self) -> int:
        return self.cats.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[i] for t in self.tensors())

    def subset(self, idx: torch.Tensor | slice) -> "TabularTensors":
        return TabularTensors(self.cats[idx], self.conts[idx], None if self.ys is None else self.ys[idx])

    def to(self, device: torch.device | str) -> "TabularTensors":
        return TabularTensors(*(t.to(device) for t in self.tensors()))

    @property
    def device(self) -> torch.device:
        return self.cats.device

    def __repr__(self) -> str:
        return (f"TabularTensors(rows={len(self)}, n_cat={self.cats.shape[1]}, n_cont={self.conts.shape[1]}, "
                f"labelled={self.ys is not None})")


class TabularLoader(TensorLoader):
    """Batches of a `TabularTensors`: ``(cats, conts, y)`` or ``(cats, conts)`` when unlabelled — the core
    `TensorLoader` (see it for ``shuffle``, ``drop_last`` and ``seed``), with the table first and ``bs``
    second, as tabular code passes them.

    >>> t = TabularTensors(torch.arange(5).reshape(5, 1), torch.zeros(5, 2), torch.tensor([0, 1, 0, 1, 1]))
    >>> [tuple(b.shape) for b in next(iter(TabularLoader(t, bs=4)))]      # (cats, conts, y)
    [(4, 1), (4, 2), (4,)]
    >>> [len(b[0]) for b in TabularLoader(t, bs=2, shuffle=True, drop_last=True)]
    [2, 2]
    """

    def __init__(self, dataset: TabularTensors, bs: int = 64, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = 42):
        super().__init__(dataset, bs=bs, shuffle=shuffle, drop_last=drop_last, seed=seed)
