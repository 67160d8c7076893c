"""Splitting loaders across the ranks of a process group, and gathering their results back in item order.

`DistributedDL` shards a loader with a ``DistributedSampler``; gathering undoes its interleaving and drops
the items it repeated, so that metrics see every item exactly once. Used by `learnkit.core.distributed`.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler,
                              SequentialSampler, TensorDataset, get_worker_info)

from .process_group import _comm_device, num_distrib, rank_distrib

__all__ = ["DistributedDL", "ShardedBatchSampler", "loader_batch_size", "rebatch", "unshuffled", "split_by_rank",
           "split_by_worker", "split_shards", "is_iterable_loader", "IterableShard"]


# --- streams: which shards this rank and this worker read ------------------------------------------------------
def split_by_rank(src: Iterable[Any]) -> Iterator[Any]:
    """This rank's shards: items ``rank, rank + W, ...`` of ``src`` under DDP (all of them in one process). The
    ``nodesplitter`` convention of the ``webdataset`` package.

    >>> list(split_by_rank(["a.tar", "b.tar", "c.tar"]))  # one process: every shard
    ['a.tar', 'b.tar', 'c.tar']
    """
    rank, world = rank_distrib(), num_distrib()
    yield from itertools.islice(src, rank, None, world) if world > 1 else src


def split_by_worker(src: Iterable[Any]) -> Iterator[Any]:
    """This DataLoader worker's shards: items ``w, w + N, ...`` of ``src`` in worker ``w`` of ``N`` (all of them
    in the main process). The ``workersplitter`` convention of the ``webdataset`` package.

    >>> list(split_by_worker(range(4)))  # not in a worker: everything
    [0, 1, 2, 3]
    """
    info = get_worker_info()
    yield from itertools.islice(src, info.id, None, info.num_workers) if info is not None and info.num_workers > 1 else src


def split_shards(shards: Iterable[Any]) -> list[Any]:
    """The shards this rank and this worker read (`split_by_rank`, then `split_by_worker`): over all ranks and
    workers every shard is read once. Items are seen once per epoch up to the last shards: with ``S`` shards,
    ``W`` ranks and ``N`` workers, a worker has ``S / (W N)`` shards rounded up or down, so give ``S`` a multiple
    of ``W N`` shards of equal size to keep the ranks' epochs the same length (or use ``steps_per_epoch``).

    >>> split_shards([f"shard-{i}.tar" for i in range(4)])
    ['shard-0.tar', 'shard-1.tar', 'shard-2.tar', 'shard-3.tar']
    """
    return list(split_by_worker(split_by_rank(list(shards))))


def is_iterable_loader(dl: Any) -> bool:
    """Whether ``dl`` reads a stream (an ``IterableDataset``, possibly through a `StepsLoader`).

    >>> is_iterable_loader(DataLoader(range(4)))
    False
    """
    inner = getattr(dl, "dl", dl)  # StepsLoader, SkipBatches... keep the loader they wrap as `dl`
    return isinstance(getattr(inner, "dataset", None), IterableDataset) or isinstance(getattr(dl, "dataset", None),
                                                                                     IterableDataset)


class IterableShard:
    """What `DistributedTrainer` makes of a stream under DDP: the loader itself (its dataset splits the shards by
    rank, `split_by_rank`), with ``set_epoch`` passed on to the dataset (a new shard order each epoch). Its
    batches are not gathered: a validation stream is read whole on every rank, so the metrics agree.

    >>> len(IterableShard(DataLoader(range(6), batch_size=2)))
    3
    """

    def __init__(self, dl: Any):
        self.dl = dl

    def set_epoch(self, epoch: int) -> None:
        for owner in (self.dl, getattr(self.dl, "dataset", None), getattr(getattr(self.dl, "dl", None), "dataset", None)):
            f = getattr(owner, "set_epoch", None)
            if callable(f):
                f(epoch)
                return

    def __len__(self) -> int:
        return len(self.dl)

    def __iter__(self) -> Iterator:
        return iter(self.dl)


# --- gathering -----------------------------------------------------------------------------------------
def _map(f, obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return f(obj)
    if isinstance(obj, Mapping):
        return type(obj)({k: _map(f, v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        out = [_map(f, o) for o in obj]
        return type(obj)(*out) if hasattr(obj, "_fields") else type(obj)(out)
    raise TypeError(f"cannot gather a {type(obj).__name__} across ranks: batches, predictions and targets must be "
                    "tensors (or tuples/lists/dicts of tensors) under DDP")


def _leaves(obj: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    _map(lambda t: out.append(t) or t, obj)
    return out


def _gather_interleaved(obj: Any, start: int, n_total: int) -> Any:
    """Gather a batch (nested tensors, the same first dimension on every rank) from all ranks in dataset
    order, keeping only the items at dataset positions ``< n_total``.

    A ``DistributedSampler`` without shuffling gives rank ``r`` the items ``r, r + W, r + 2W...`` of the
    (padded) dataset, so item ``k`` of rank ``r``'s shard is dataset position ``k * W + r``: stacking the
    ranks' batches on dimension 1 and flattening puts them back in dataset order, and the positions
    ``>= n_total`` are the sampler's padding (repeats of the first items). ``start`` is the shard position
    of the batch's first item.
    """
    world, dev = num_distrib(), _comm_device()
    leaves = _leaves(obj)
    if any(t.ndim == 0 for t in leaves):
        raise ValueError("cannot gather a 0-dimensional tensor as a batch of items")
    # one small collective for every leaf's shape first: a mismatch (padded sequences of different
    # lengths) is then a clear error on every rank instead of a hang or a garbled gather
    width = max([1, *(t.ndim for t in leaves)])
    shapes = torch.tensor([list(t.shape) + [0] * (width - t.ndim) for t in leaves] or [[0]], dtype=torch.long,
                          device=dev)
    all_shapes = [torch.empty_like(shapes) for _ in range(world)]
    dist.all_gather(all_shapes, shapes)
    all_shapes = [s.cpu().tolist() for s in all_shapes]
    leaf_idx = iter(range(len(leaves)))

    def gather(t: torch.Tensor) -> torch.Tensor:
        i = next(leaf_idx)
        per_rank = [tuple(s[i][: t.ndim]) for s in all_shapes]
        if len({s[0] for s in per_rank}) != 1:
            raise RuntimeError(f"ranks have different batch sizes {[s[0] for s in per_rank]}; the loaders must be "
                               "sharded with a DistributedSampler (DistributedDL)")
        if len({s[1:] for s in per_rank}) != 1:
            raise ValueError(f"predictions or targets have different shapes on different ranks ({per_rank}); "
                             "pad them to a fixed size (e.g. a fixed sequence length) to validate under DDP")
        x = t.detach()
        is_bool = x.dtype == torch.bool
        x = (x.to(torch.uint8) if is_bool else x).to(dev).contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        out = torch.stack(parts, dim=1).flatten(0, 1)  # [n, W, ...] -> dataset order
        out = out[: max(0, min(out.shape[0], n_total - start * world))].to(t.device)
        return out.bool() if is_bool else out

    return _map(gather, obj)


# --- sharded loaders -----------------------------------------------------------------------------------
def _loader_seed(dl: Any) -> int:
    for owner in (dl, getattr(dl, "sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator):
            return int(g.initial_seed() % 2**62)
    return 0


def _broadcast_int(v: int) -> int:
    t = torch.tensor([v], dtype=torch.long, device=_comm_device())
    dist.broadcast(t, src=0)
    return int(t.item())


def _is_shuffled(dl: Any, default: bool) -> bool:
    """Whether ``dl`` draws a new order each epoch: torch's samplers say it by their type, custom (batch)
    samplers and learnkit's loaders by a ``shuffle`` attribute; else ``default`` (true for training)."""
    if isinstance(dl, DataLoader):
        if type(dl.batch_sampler) is BatchSampler and isinstance(dl.sampler, (RandomSampler, SequentialSampler)):
            return isinstance(dl.sampler, RandomSampler)
        for owner in (dl.batch_sampler, dl.sampler):
            if isinstance(getattr(owner, "shuffle", None), bool):
                return owner.shuffle
        return default
    return bool(getattr(dl, "shuffle", default))


def loader_batch_size(dl: Any) -> int | None:
    """The batch size of any loader: ``batch_size`` (or ``bs``) of the loader or of its batch sampler.

    One lookup for every kind of loader: torch ``DataLoader`` (``batch_size``, or ``batch_sampler.batch_size``),
    custom batch samplers such as the text ``BucketBatchSampler`` (``bs``), learnkit's tensor loaders.

    >>> class Buckets:  # a custom batch sampler that calls its batch size `bs`
    ...     bs = 3
    ...     def __iter__(self): return iter([[0, 1, 2], [3]])
    ...     def __len__(self): return 2
    >>> loader_batch_size(DataLoader(range(4), batch_sampler=Buckets()))
    3
    """
    for owner in (dl, getattr(dl, "batch_sampler", None)):
        for attr in ("batch_size", "bs"):
            v = getattr(owner, attr, None)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def _drop_last(dl: Any) -> bool:
    if isinstance(dl, DataLoader) and dl.batch_size is None:
        return bool(getattr(dl.batch_sampler, "drop_last", False))
    return bool(getattr(dl, "drop_last", False))


def _batched_rows(dl: Any, ds: Any) -> bool:
    """Whether ``dl`` reads whole batches of rows (``dataset[index_tensor]``) rather than item by item:
    learnkit's tensor loaders (`TensorLoader`, `TabularLoader`) — not torch DataLoaders, and no collate_fn."""
    return (not isinstance(dl, DataLoader) and getattr(dl, "collate_fn", None) is None
            and (isinstance(ds, TensorDataset) or callable(getattr(ds, "tensors", None))))


class _Rows:
    """A map-style view of a tensor dataset that fetches a whole batch with one index tensor."""

    def __init__(self, ds: Any):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, idx: list[int]) -> Any:
        return self.ds[torch.as_tensor(idx, dtype=torch.long)]


def rebatch(dl: Any, sampler: Any, drop_last: bool | None = None) -> DataLoader:
    """A loader over ``dl``'s dataset with its batch size and collation, drawing items from ``sampler``.

    The one mechanism behind sharding (``sampler`` a ``DistributedSampler``) and in-order inference
    (a ``SequentialSampler``, see `unshuffled`): it works for torch DataLoaders with or without a custom
    batch sampler and for learnkit's tensor loaders, whose batches are fetched as index tensors (one
    ``dataset[idx]`` per batch, no per-row Python). ``drop_last=None`` keeps ``dl``'s.
    """
    ds, bs = getattr(dl, "dataset", None), loader_batch_size(dl)
    if ds is None or isinstance(ds, IterableDataset) or not hasattr(ds, "__len__") or bs is None:
        raise TypeError(f"cannot rebatch the loader {type(dl).__name__}: sharding it over processes (DDP) or reading "
                        "it in order needs a map-style `dataset` (with __len__) and a batch size (`batch_size` or "
                        "`bs` on the loader or its batch sampler), e.g. a torch DataLoader built by learnkit.make_loader")
    drop_last = _drop_last(dl) if drop_last is None else drop_last
    if _batched_rows(dl, ds):
        return DataLoader(_Rows(ds), batch_size=None, sampler=BatchSampler(sampler, bs, drop_last))
    if not isinstance(dl, DataLoader):
        return DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=drop_last,
                          collate_fn=getattr(dl, "collate_fn", None))
    kw: dict[str, Any] = dict(collate_fn=dl.collate_fn, num_workers=dl.num_workers, pin_memory=dl.pin_memory,
                              timeout=dl.timeout, worker_init_fn=dl.worker_init_fn,
                              persistent_workers=dl.persistent_workers,
                              multiprocessing_context=dl.multiprocessing_context)
    if dl.num_workers > 0:
        kw["prefetch_factor"] = dl.prefetch_factor
    return DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=drop_last, **kw)


def unshuffled(dl: Any) -> Any:
    """``dl`` itself when it yields every item once in dataset order, else such a copy of it (no
    shuffling, ``drop_last=False``): what `Learner.get_preds(ds_idx=0)` iterates. A loader without a
    map-style dataset and a batch size (a plain list of batches) is read as it is."""
    ds = getattr(dl, "dataset", None)
    if ds is None or isinstance(ds, IterableDataset) or loader_batch_size(dl) is None:
        return dl
    if not _is_shuffled(dl, default=True) and not _drop_last(dl):
        return dl
    return rebatch(dl, SequentialSampler(range(len(dl.dataset))), drop_last=False)


class ShardedBatchSampler:
    """This rank's share of a seeded batch sampler's batches (text's length-bucketing `BucketBatchSampler`...).

    Each epoch a private copy of ``batch_sampler`` is reseeded with ``seed + epoch`` (the same on every
    rank), so every rank draws the same batches; rank ``r`` keeps batches ``r, r + W, r + 2W...``, the list
    padded with its first batches so that every rank has as many (DDP needs as many steps on each rank).
    Batches keep what the batch sampler made of them (similar lengths), unlike a per-item shard.
    """

    def __init__(self, batch_sampler: Any, rank: int, world_size: int, seed: int = 0):
        self.batch_sampler = copy.deepcopy(batch_sampler)
        self.rank, self.world_size, self.seed, self.epoch, self.shuffle = rank, world_size, seed, 0, True
        self.num_samples = None  # items per epoch vary with the batches drawn

    @staticmethod
    def fits(batch_sampler: Any) -> bool:
        """Whether ``batch_sampler`` draws its order from its own ``torch.Generator`` (so it can be reseeded)."""
        return isinstance(getattr(batch_sampler, "generator", None), torch.Generator)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.batch_sampler) // self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        self.batch_sampler.generator.manual_seed(self.seed + self.epoch)
        batches = list(self.batch_sampler)
        n = len(self) * self.world_size
        batches += batches[: n - len(batches)]
        return iter(batches[self.rank: n: self.world_size])


class DistributedDL:
    """This rank's shard of a loader: the same dataset, batch size and collation, with a
    ``DistributedSampler`` (``drop_last=False``: the sampler repeats a few items so that every rank has as
    many; `gather` drops them again).

    ``dl`` is any loader `rebatch` accepts (a torch ``DataLoader`` over a map-style dataset, with its own
    batch sampler or not, or a learnkit tensor loader). A shuffled loader whose own batch sampler is seeded
    (text's length buckets) is sharded batch by batch instead (`ShardedBatchSampler`); its batches are
    never gathered (training only). ``seed`` must be the same on every rank
    (`DistributedTrainer` broadcasts rank 0's). ``drop_last=None`` keeps ``dl``'s (inference passes ``False``).

    >>> dl = make_loader(list(range(10)), bs=2)
    >>> shard = DistributedDL(dl, rank=1, world_size=2, shuffle=False)  # what rank 1 of 2 reads under DDP
    >>> [batch.tolist() for batch in shard]
    [[1, 3], [5, 7], [9]]
    >>> len(shard), shard.n_total
    (3, 10)
    """

    def __init__(self, dl: Any, rank: int, world_size: int, shuffle: bool, seed: int = 0,
                 drop_last: bool | None = None):
        ds = getattr(dl, "dataset", None)
        if ds is None or isinstance(ds, IterableDataset) or not hasattr(ds, "__len__"):
            raise TypeError(f"cannot shard the loader {type(dl).__name__} over {world_size} processes: DDP needs a "
                            "loader with a map-style `dataset` (with __len__) and a batch size, e.g. a torch "
                            "DataLoader built by learnkit.make_loader")
        self.loader, self.dataset, self.batch_size = dl, ds, loader_batch_size(dl)
        self.rank, self.world_size, self.n_total = rank, world_size, len(ds)
        custom = getattr(dl, "batch_sampler", None)
        if shuffle and isinstance(dl, DataLoader) and type(custom) is not BatchSampler and ShardedBatchSampler.fits(custom):
            # training with a seeded batch sampler of its own: shard its batches, keeping how it groups items
            self.sampler = ShardedBatchSampler(custom, rank, world_size, seed)
            self.dl = DataLoader(ds, batch_sampler=self.sampler, collate_fn=dl.collate_fn, num_workers=dl.num_workers,
                                 pin_memory=dl.pin_memory)
            self._start = 0
            return
        self.sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                          drop_last=False)
        try:
            self.dl = rebatch(dl, self.sampler, drop_last)
        except TypeError as e:
            raise TypeError(f"cannot shard the loader over {world_size} processes: {e}") from None
        self._start = 0  # this rank's position (in items of its shard) of the batch being processed

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffling (the same permutation on every rank, a new one each epoch)."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dl)

    def __iter__(self) -> Iterator:
        self._start = 0
        for batch in self.dl:
            yield batch
            self._start += _first_dim(batch)

    def gather(self, obj: Any) -> Any:
        """The current batch's tensors from every rank, in dataset order, without the sampler's padding."""
        return _gather_interleaved(obj, self._start, self.n_total)

    def gather_all(self, obj: Any) -> Any:
        """Whole-shard tensors (one row per item of this rank's shard) from every rank, in dataset order."""
        return _gather_interleaved(obj, 0, self.n_total)

    def __repr__(self) -> str:
        return (f"DistributedDL(rank {self.rank}/{self.world_size}, {self.sampler.num_samples} of {self.n_total} items, "
                f"bs={self.batch_size}, shuffle={self.sampler.shuffle})")


def _first_dim(batch: Any) -> int:
    """Items in a batch: the first dimension of its first tensor (other leaves, such as the ``"stage"`` number
    of a cached text batch, are not counted and need no gathering)."""
    first = next(iter(_tensors(batch)), None)
    return (first.shape[0] if first.ndim else 1) if first is not None else 0


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    return [t for o in obj for t in _tensors(o)] if isinstance(obj, (list, tuple)) else []