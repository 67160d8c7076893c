"""`TensorLoader`: batches that are slices of tensors held in memory — no per-row Python, no collation.

A ratings table is two small integer columns and a float column, so a ``torch.utils.data.DataLoader``
(one ``__getitem__`` per row, then a collate) spends far more time in Python than the model spends in
maths. `TensorLoader` permutes the whole tensors once per epoch with its own seeded generator and
yields contiguous slices; on a GPU the tensors live on the GPU, so a batch never crosses the bus.

>>> import torch
>>> dl = TensorLoader(torch.arange(10), torch.arange(10.) * 2, bs=4, shuffle=True, seed=0)
>>> len(dl), [b[0].shape[0] for b in dl]
(3, [4, 4, 2])
>>> all(bool((y == 2 * x).all()) for x, y in dl)   # rows stay together
True
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import TensorDataset

__all__ = ["TensorLoader"]


class TensorLoader:
    """Iterate over same-length tensors in batches of ``bs`` rows.

    Args:
        *tensors: tensors whose first dimension is the row.
        bs: rows per batch.
        shuffle: draw a new permutation each epoch from a private generator seeded with ``seed``
            (so the order is the same on every run and does not touch the global RNG).
        drop_last: drop the last, smaller batch.
        seed: the generator's seed (``None``: a fresh random seed).
    """

    def __init__(self, *tensors: torch.Tensor, bs: int = 64, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = 42):
        if not tensors:
            raise ValueError("TensorLoader needs at least one tensor")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError(f"all tensors must have the same number of rows, got {[t.shape[0] for t in tensors]}")
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            raise ValueError(f"bs (batch size) must be a positive integer, got {bs!r}")
        self.tensors, self.batch_size, self.shuffle, self.drop_last = tuple(tensors), bs, shuffle, drop_last
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**62))

    @property
    def n(self) -> int:
        return self.tensors[0].shape[0]

    @property
    def dataset(self) -> TensorDataset:
        """The rows as a ``TensorDataset`` (for ``len(dl.dataset)`` and row access)."""
        return TensorDataset(*self.tensors)

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    def to(self, device: str | torch.device) -> "TensorLoader":
        """Move the tensors to ``device`` (in place); batches are then created there."""
        self.tensors = tuple(t.to(device) for t in self.tensors)
        return self

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        tensors = self.tensors
        if self.shuffle:
            perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            tensors = tuple(t[perm] for t in tensors)
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield tuple(t[sl] for t in tensors)

    def __repr__(self) -> str:
        return f"TensorLoader({self.n} rows, bs={self.batch_size}, shuffle={self.shuffle}, device={self.device})"
