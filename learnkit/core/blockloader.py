"""The loader side of a `DataBlock`: batches that skip failed items, the training loader, the worker count.

`collate_skipping` drops the items that a `BlockDataset` with ``on_error='skip'`` returned as ``None``;
`TrainLoader` tops a batch that lost items back up from the next one (`merge_batches`);
`default_num_workers` picks how many worker processes load the data, and `workers_can_start` says why it
must be 0 where workers cannot start.

>>> collate_skipping([(1, 0), None, (2, 1)])
(tensor([1, 2]), tensor([0, 1]))
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate

from .blockdata import DataBlockError
from .validation import check_int

__all__ = ["collate_skipping", "merge_batches", "TrainLoader", "workers_can_start", "default_num_workers"]


def collate_skipping(batch: Sequence[tuple | None]) -> tuple:
    """Stack the items of a batch, leaving out the ``None`` of skipped items; tensors of different shapes get an
    error that says how to give them one."""
    kept = [b for b in batch if b is not None]
    if not kept:
        raise DataBlockError(f"all {len(batch)} items of a batch failed and were skipped (on_error='skip'); "
                             "see dls.skipped for the files and reasons")
    out = []
    for k, col in enumerate(zip(*kept)):
        if all(isinstance(c, torch.Tensor) for c in col):
            shapes = {tuple(c.shape) for c in col}
            if len(shapes) > 1:
                raise RuntimeError(f"items in a batch have different sizes (value {k}: "
                                   f"{', '.join(map(str, sorted(shapes)[:3]))}); add an item transform that gives "
                                   "them one size, e.g. item_tfms=Resize(224)")
            out.append(torch.stack(col))
        else:
            out.append(default_collate(list(col)))
    return tuple(out)


def _batch_len(batch: Any) -> int | None:
    for col in batch if isinstance(batch, (tuple, list)) else (batch,):
        if isinstance(col, torch.Tensor) and col.ndim:
            return col.shape[0]
        if isinstance(col, list):
            return len(col)
    return None


def merge_batches(a: Any, b: Any) -> Any:
    """One batch of the items of batches ``a`` and ``b`` (tensors are concatenated, lists joined, dicts and
    tuples merged key by key); ``None`` when they cannot be merged.

    >>> merge_batches((torch.zeros(1, 2), ["a"]), (torch.ones(2, 2), ["b", "c"]))
    (tensor([[0., 0.],
            [1., 1.],
            [1., 1.]]), ['a', 'b', 'c'])
    """
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.cat([a, b]) if a.ndim and a.shape[1:] == b.shape[1:] else None
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        parts = [merge_batches(x, y) for x, y in zip(a, b)]
        return None if any(p is None for p in parts) else tuple(parts)
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        parts = {k: merge_batches(a[k], b[k]) for k in a}
        return None if any(p is None for p in parts.values()) else parts
    return None


class TrainLoader(DataLoader):
    """The training loader of a `DataBlock`: a batch left with a single item, by ``on_error='skip'`` or by a
    last partial batch, is merged into the next batch (or dropped when it is the last of the epoch): batch
    normalisation cannot train on one item, and would stop the fit with an error in the middle of an epoch.

    >>> dl = TrainLoader(list(range(5)), batch_size=2)  # batches [0, 1], [2, 3], then [4] alone: dropped
    >>> [b.tolist() for b in dl]
    [[0, 1], [2, 3]]
    """

    def __iter__(self) -> Iterator:
        held, n = None, 0
        for batch in super().__iter__():
            if held is not None:
                merged = merge_batches(held, batch)
                if merged is None:  # cannot be merged: the single item goes alone, as before
                    yield held
                else:
                    batch = merged
                held = None
            elif (self.batch_size or 0) > 1 and _batch_len(batch) == 1:
                held = batch
                continue
            n += 1
            yield batch
        if held is not None and n == 0:  # the only batch of the epoch: better one item than none
            yield held


def workers_can_start(dataset: Any = None) -> tuple[bool, str]:
    """``(ok, why_not)``: whether DataLoader worker processes can start here. They cannot inside a daemon
    process (e.g. a worker itself), and with the ``spawn``/``forkserver`` start method (Windows, macOS) they
    cannot run a script typed into an interactive session, nor a dataset that does not pickle (a lambda)."""
    if multiprocessing.current_process().daemon:
        return False, "this is a daemon process, which cannot start worker processes"
    method = multiprocessing.get_start_method(allow_none=True) or ("fork" if sys.platform == "linux" else "spawn")
    if method != "fork":
        main = sys.modules.get("__main__")
        if main is not None and not getattr(main, "__file__", None):
            return False, f"the '{method}' start method cannot start workers from an interactive session"
        if dataset is not None:
            try:
                pickle.dumps(dataset)
            except Exception as e:  # noqa: BLE001 - any pickling failure means no workers
                return False, (f"the '{method}' start method sends the dataset to the workers by pickling, and it "
                               f"does not pickle ({type(e).__name__}: {e}); define get_x/get_y with def at the top "
                               "level of a module instead of lambda")
    return True, ""


def default_num_workers(num_workers: int | None = None, dataset: Any = None) -> int:
    """``num_workers`` if given; else ``$LEARNKIT_NUM_WORKERS``; else the CPUs this process may use, at most 8,
    and 0 where workers cannot start (`workers_can_start`) — with a warning saying why.

    >>> default_num_workers(2)  # an explicit count is kept
    2
    >>> default_num_workers() >= 0  # None: $LEARNKIT_NUM_WORKERS, else the CPUs (at most 8), 0 where none can start
    True
    """
    if num_workers is not None:
        return check_int("num_workers", num_workers, low=0, what="(or None)")
    env = os.environ.get("LEARNKIT_NUM_WORKERS")
    if env:
        return int(env)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = min(8, cpus)
    if n <= 1:
        return 0
    ok, why = workers_can_start(dataset)
    if not ok:
        warnings.warn(f"loading data in the main process (num_workers=0): {why}", stacklevel=3)
        return 0
    return n
