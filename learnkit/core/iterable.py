"""Streams: loaders over a ``torch.utils.data.IterableDataset`` (WebDataset shards, ``datasets`` streaming,
litdata...), whose length may be unknown.

The loop, progress bars and schedules (``fit_one_cycle``) count an epoch in steps, so a stream needs one of:

- a ``__len__`` of its own;
- ``n_items=``: the items per epoch (over all ranks): the loader's length is ``ceil(n_items / world / bs)``
  steps, and the epoch ends when the stream does (`SizedIterable`);
- ``steps_per_epoch=``: exactly that many steps per epoch, the stream continuing across epochs and starting
  again when it ends (`learnkit.core.steps.StepsLoader`); under DDP every rank then takes the same number of
  steps whatever its shards hold.

Which shards each rank and each worker read is `learnkit.core.sharding.split_shards`. A stream's loader workers
are started again each epoch (not persistent), so that the epoch a ``set_epoch(epoch)`` gives the dataset (a
new shard order) reaches the copy of it in each worker.

>>> import torch
>>> class Count(torch.utils.data.IterableDataset):
...     def __iter__(self): return iter(range(10))
>>> dl = iterable_loader(Count(), bs=4, n_items=10)
>>> len(dl), [b.tolist() for b in dl][-1]
(3, [8, 9])
>>> len(iterable_loader(Count(), bs=4, steps_per_epoch=5))  # an epoch of 5 steps, wrapping around
5
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset

from .data import make_loader
from .process_group import num_distrib
from .steps import StepsLoader
from .validation import check_int

__all__ = ["SizedIterable", "iterable_loader"]


class SizedIterable(IterableDataset):
    """A stream with a stated number of items per epoch (``n_items`` over all ranks, so ``n_items / world`` on
    this one): its length, for the loop and the schedules. ``set_epoch`` is passed on.

    >>> len(SizedIterable(range(7), 7))
    7
    """

    def __init__(self, ds: Any, n_items: int):
        check_int("n_items", n_items, what="(items per epoch)")
        self.ds, self.n_items = ds, n_items

    def __len__(self) -> int:
        return -(-self.n_items // num_distrib())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.ds)

    def set_epoch(self, epoch: int) -> None:
        f = getattr(self.ds, "set_epoch", None)
        if callable(f):
            f(epoch)

    def fixed(self) -> "SizedIterable":
        """The stream without random item transforms (its ``fixed()``, as `BlockDataset.fixed`), for the frozen-
        feature cache; itself when the stream has none.

        >>> SizedIterable(range(3), 3).fixed().ds
        range(0, 3)
        """
        f = getattr(self.ds, "fixed", None)
        return type(self)(f(), self.n_items) if callable(f) else self


def iterable_loader(ds: IterableDataset, bs: int = 64, n_items: int | None = None, steps_per_epoch: int | None = None,
                    collate_fn: Callable | None = None, num_workers: int = 0, drop_last: bool = False,
                    device: torch.device | None = None) -> Any:
    """A training loader over the stream ``ds`` (see the module docstring).

    >>> dl = iterable_loader(SizedIterable(range(6), 6), bs=4)  # a stream that states its length itself
    >>> len(dl)
    2
    """
    if steps_per_epoch is not None:
        return StepsLoader(make_loader(ds, bs, collate_fn=collate_fn, num_workers=num_workers, drop_last=drop_last,
                                       device=device), steps_per_epoch)
    if n_items is not None:
        ds = SizedIterable(ds, n_items)
    else:
        try:
            len(ds)
        except TypeError:
            raise ValueError(f"the stream {type(ds).__name__} has no length, so the loop cannot count its epochs: pass "
                             "n_items= (items per epoch) or steps_per_epoch= (steps per epoch)") from None
    return make_loader(ds, bs, collate_fn=collate_fn, num_workers=num_workers, drop_last=drop_last, device=device)
