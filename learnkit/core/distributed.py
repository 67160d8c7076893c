"""Running under ``torchrun``: one process per device, PyTorch's own DistributedDataParallel (DDP).

The same script runs unchanged on one device or under ``torchrun --nproc_per_node=N script.py``: a
`Learner` created in a process that torchrun started joins the process group (NCCL on CUDA, gloo on CPU)
and adds a `DistributedTrainer`, which during ``fit``

- wraps the model in ``DistributedDataParallel`` (weights broadcast from rank 0, gradients averaged);
- shards the training set with a ``DistributedSampler`` (the same seed on every rank, ``set_epoch`` each
  epoch) and the validation set too, then gathers each validation batch's predictions and targets from
  every rank and drops the items the sampler repeated to even out the shards: losses and metrics are
  computed over every item exactly once and are identical on every rank;
- averages each training batch's loss over ranks, so every rank logs the same numbers and takes the same
  decisions (early stopping, stopping on NaN, lr_find's divergence test).

Progress bars and files (checkpoints, exports, CSV logs) come from rank 0 only; `Learner.load` waits
for rank 0 to have written. The process group is destroyed at exit (or when `distrib_ctx` ends).

Explicit use: ``learn.to_distributed()`` or ``with learn.distrib_ctx(): learn.fit(...)``. Set
``LEARNKIT_DISTRIBUTED=0`` to keep a torchrun-started process out of the group. In a single process all
of this is a no-op:

>>> rank_distrib(), num_distrib(), is_rank0()
(0, 1, True)
"""
from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler,
                              SequentialSampler, TensorDataset)

from .callback import Callback

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["rank_distrib", "num_distrib", "is_rank0", "launched_by_torchrun", "setup_distrib", "teardown_distrib",
           "distrib_barrier", "DistributedDL", "DistributedTrainer", "to_distributed", "detach_distributed",
           "distrib_ctx", "maybe_distribute", "shard_for_preds", "gather_preds"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_OWNED_GROUP = False  # whether learnkit created the default process group (and so destroys it)


# --- where am I --------------------------------------------------------------------------------------
def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_distrib() -> int:
    """This process' rank: from the process group, else ``$RANK``, else 0."""
    return dist.get_rank() if _initialized() else int(os.environ.get("RANK", 0))


def num_distrib() -> int:
    """How many processes train together (1 when not distributed)."""
    return dist.get_world_size() if _initialized() else int(os.environ.get("WORLD_SIZE", 1))


def is_rank0() -> bool:
    """Whether this process writes files and shows progress: true unless it is a rank > 0 of a process group."""
    return not _initialized() or dist.get_rank() == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process with WORLD_SIZE > 1."""
    return all(v in os.environ for v in _TORCHRUN_VARS) and int(os.environ["WORLD_SIZE"]) > 1


def _comm_device() -> torch.device:
    """Where tensors must be for collectives: this rank's GPU with NCCL, the CPU with gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# --- the process group ---------------------------------------------------------------------------------
def setup_distrib(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the default process group described by the torchrun environment.

    ``backend`` defaults to NCCL when CUDA is available, gloo otherwise; with NCCL the GPU ``LOCAL_RANK``
    becomes the current device. Returns whether a group is in use; a group that already exists (created by the user) is
    used as it is and is not destroyed by `teardown_distrib`.
    """
    global _OWNED_GROUP
    if _initialized():
        return True
    if not launched_by_torchrun():
        return False
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; install one with distributed support")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    kw = {"device_id": torch.device("cuda", torch.cuda.current_device())} if backend == "nccl" else {}
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kw)
    _OWNED_GROUP = True
    atexit.register(teardown_distrib)
    return True


def teardown_distrib() -> None:
    """Destroy the process group if learnkit created it (registered to run at exit)."""
    global _OWNED_GROUP
    if _OWNED_GROUP and _initialized():
        dist.destroy_process_group()
    _OWNED_GROUP = False


def distrib_barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if _initialized():
        dist.barrier(**({"device_ids": [torch.cuda.current_device()]} if dist.get_backend() == "nccl" else {}))


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
    """Whether ``dl`` draws a new order each epoch (custom samplers: ``default``, true for training)."""
    if isinstance(dl, DataLoader) and type(dl.batch_sampler) is BatchSampler:
        if isinstance(dl.sampler, (RandomSampler, SequentialSampler)):
            return isinstance(dl.sampler, RandomSampler)
        return default
    return bool(getattr(dl, "shuffle", default))


class DistributedDL:
    """This rank's shard of a loader: the same dataset, batch size and collation, with a
    ``DistributedSampler`` (``drop_last=False``: the sampler repeats a few items so that every rank has as
    many; `gather` drops them again).

    ``dl`` is a ``torch.utils.data.DataLoader`` over a map-style dataset, or any loader with ``dataset``
    (map-style) and ``batch_size`` attributes (and optionally ``collate_fn``; a loader over a
    ``TensorDataset`` without one, such as learnkit's ``TensorLoader``, is read a whole batch of rows at a
    time). ``seed`` must be the same on every rank (`DistributedTrainer` broadcasts rank 0's).
    """

    def __init__(self, dl: Any, rank: int, world_size: int, shuffle: bool, seed: int = 0):
        ds = getattr(dl, "dataset", None)
        bs = getattr(dl, "batch_size", None)
        if isinstance(dl, DataLoader) and bs is None:
            bs = getattr(dl.batch_sampler, "batch_size", None)
        if ds is None or isinstance(ds, IterableDataset) or not hasattr(ds, "__len__") or bs is None:
            raise TypeError(f"cannot shard the loader {type(dl).__name__} over {world_size} processes: DDP needs a "
                            "loader with a map-style `dataset` (with __len__) and a `batch_size`, e.g. a "
                            "torch DataLoader built by learnkit.make_loader")
        self.loader, self.dataset, self.batch_size = dl, ds, bs
        self.rank, self.world_size, self.n_total = rank, world_size, len(ds)
        self.sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                          drop_last=False)
        if isinstance(dl, DataLoader):
            drop_last = dl.drop_last if dl.batch_size is not None else bool(getattr(dl.batch_sampler, "drop_last", False))
            kw: dict[str, Any] = dict(collate_fn=dl.collate_fn, num_workers=dl.num_workers, pin_memory=dl.pin_memory,
                                      timeout=dl.timeout, worker_init_fn=dl.worker_init_fn,
                                      persistent_workers=dl.persistent_workers,
                                      multiprocessing_context=dl.multiprocessing_context)
            if dl.num_workers > 0:
                kw["prefetch_factor"] = dl.prefetch_factor
            self.dl = DataLoader(ds, batch_size=bs, sampler=self.sampler, drop_last=drop_last, **kw)
        else:
            drop_last = bool(getattr(dl, "drop_last", False))
            collate = getattr(dl, "collate_fn", None)
            if collate is None and isinstance(ds, TensorDataset):
                # rows fetched a batch at a time (``dataset[list_of_indices]``), as the loader itself slices
                self.dl = DataLoader(ds, batch_size=None, sampler=BatchSampler(self.sampler, bs, drop_last))
            else:
                self.dl = DataLoader(ds, batch_size=bs, sampler=self.sampler, drop_last=drop_last, collate_fn=collate)
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
    leaves = _leaves(batch)
    return (leaves[0].shape[0] if leaves[0].ndim else 1) if leaves else 0


# --- the callback ----------------------------------------------------------------------------------------
class DistributedTrainer(Callback):
    """DDP for the duration of each ``fit`` (see the module docstring). Added by `to_distributed`.

    ``find_unused_parameters``, ``bucket_cap_mb``, ``gradient_as_bucket_view`` go to ``DistributedDataParallel``
    (which also copies rank 0's buffers at each forward; before validation they are copied once more, so
    every rank validates the very same model).
    """

    order = -30  # first: every other callback (schedules, recorder, progress, loader swaps) sees the shards

    def __init__(self, find_unused_parameters: bool = False, bucket_cap_mb: float | None = None,
                 gradient_as_bucket_view: bool = True):
        self.find_unused_parameters, self.bucket_cap_mb = find_unused_parameters, bucket_cap_mb
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self._shards: dict[int, tuple[Any, DistributedDL]] = {}
        self._epochs = 0
        self.silenced = False  # whether to_distributed turned progress off (on ranks > 0)

    def shard(self, dl: Any, training: bool) -> DistributedDL:
        """This rank's `DistributedDL` of ``dl`` (built once per loader and kept)."""
        if isinstance(dl, DistributedDL):
            return dl
        key = id(dl)
        hit = self._shards.get(key)
        if hit is not None and hit[0] is dl:
            return hit[1]
        seed = _broadcast_int(_loader_seed(dl))
        ddl = DistributedDL(dl, dist.get_rank(), dist.get_world_size(), shuffle=_is_shuffled(dl, training), seed=seed)
        self._shards[key] = (dl, ddl)
        return ddl

    def _ddp(self) -> nn.Module:
        dev = self.learn.device
        kw: dict[str, Any] = dict(find_unused_parameters=self.find_unused_parameters,
                                  gradient_as_bucket_view=self.gradient_as_bucket_view)
        if self.bucket_cap_mb is not None:
            kw["bucket_cap_mb"] = self.bucket_cap_mb
        if dev.type == "cuda":
            kw.update(device_ids=[dev.index if dev.index is not None else torch.cuda.current_device()],
                      output_device=dev.index)
        return nn.parallel.DistributedDataParallel(self.learn.model, **kw)

    def before_fit(self):
        if not any(p.requires_grad for p in self.learn.model.parameters()):
            self.learn.ddp_model = None  # nothing to synchronise (everything frozen)
            _broadcast_state(self.learn.model)
        else:
            self.learn.ddp_model = self._ddp()  # broadcasts rank 0's weights and buffers

    def before_train(self):
        ddl = self.shard(self.learn.dl, training=True)
        ddl.set_epoch(self._epochs)
        self._epochs += 1
        self.learn.dl, self.learn.n_iter = ddl, len(ddl)

    def before_validate(self):
        # every rank validates the same model: rank 0's buffers (BN running statistics drift per rank)
        _broadcast_state(self.learn.model, params=False)
        ddl = self.shard(self.learn.dl, training=False)
        self.learn.dl, self.learn.n_iter = ddl, len(ddl)

    def after_loss(self):
        learn = self.learn
        if not isinstance(learn.dl, DistributedDL) or learn.loss is None:
            return
        if learn.training:
            # the loss every callback sees (recorder, NaN check, lr_find's divergence test) is the mean over
            # ranks, so that every rank takes the same decisions; backward still uses this rank's `loss_grad`
            loss = learn.loss.detach().float().to(_comm_device(), copy=True)
            dist.all_reduce(loss)
            learn.loss = (loss / dist.get_world_size()).to(learn.loss.device)
            return
        learn.pred = learn.dl.gather(learn.pred)
        if learn.yb:
            learn.yb = learn.dl.gather(tuple(learn.yb))
            with torch.no_grad(), learn.autocast():
                learn.loss = learn.loss_func(learn.pred, *learn.yb).detach()
            learn.loss_grad = learn.loss

    def after_fit(self):
        self.learn.ddp_model = None
        _broadcast_state(self.learn.model, params=False)


def _broadcast_state(model: nn.Module, params: bool = True) -> None:
    """Copy rank 0's buffers (and parameters) to every rank, in place."""
    dev = _comm_device()
    with torch.no_grad():
        for t in list(model.buffers()) + (list(model.parameters()) if params else []):
            tmp = t.data if t.device == dev else t.data.to(dev)
            dist.broadcast(tmp, src=0)
            if tmp is not t.data:
                t.data.copy_(tmp)


# --- entry points (Learner.to_distributed / Learner.distrib_ctx call these) -----------------------------------
def to_distributed(learn: "Learner", sync_bn: bool = True, find_unused_parameters: bool = False,
                   backend: str | None = None) -> "Learner":
    """Make ``learn`` train with DDP over the processes torchrun started (a no-op in a single process).

    Joins the process group if needed, moves the model to this rank's GPU (``cuda:LOCAL_RANK``) on CUDA,
    converts batch norm to ``SyncBatchNorm`` on CUDA when ``sync_bn``, silences progress on ranks > 0 and
    adds a `DistributedTrainer`.
    """
    if getattr(learn, "distributed_trainer", None) is not None:
        return learn
    if not setup_distrib(backend or ("nccl" if learn.device.type == "cuda" else "gloo")) or num_distrib() < 2:
        return learn
    if (dist.get_backend() == "nccl") != (learn.device.type == "cuda"):
        raise RuntimeError(f"the process group uses {dist.get_backend()} but the Learner is on {learn.device}: NCCL "
                           "needs CUDA and the CPU needs gloo (pass backend= or device=)")
    if learn.device.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())
        if learn.device != dev:
            learn.device = dev
            learn.dls.to(dev)
            learn.model.to(dev)
        if sync_bn:
            learn.model = nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)
    cb = DistributedTrainer(find_unused_parameters=find_unused_parameters)
    cb.silenced = rank_distrib() != 0 and learn.show_progress
    if cb.silenced:
        learn.show_progress = False
    learn.add_cb(cb)
    return learn


def detach_distributed(learn: "Learner") -> "Learner":
    """Remove the `DistributedTrainer` (the model keeps its weights, the loaders are the original ones)."""
    cb = getattr(learn, "distributed_trainer", None)
    if cb is not None:
        learn.remove_cb(cb)
        learn.show_progress = learn.show_progress or cb.silenced
    learn.ddp_model = None
    return learn


@contextlib.contextmanager
def distrib_ctx(learn: "Learner", sync_bn: bool = True, find_unused_parameters: bool = False,
                backend: str | None = None) -> Iterator["Learner"]:
    """``with learn.distrib_ctx(): learn.fit(...)``: DDP inside the block; on leaving it the callback is
    removed and the process group, if this block created it, is destroyed."""
    created = not _initialized()
    to_distributed(learn, sync_bn=sync_bn, find_unused_parameters=find_unused_parameters, backend=backend)
    try:
        yield learn
    finally:
        detach_distributed(learn)
        if created and _initialized():
            distrib_barrier()
            teardown_distrib()


def maybe_distribute(learn: "Learner") -> None:
    """Called by every new `Learner`: join DDP when torchrun started this process (unless
    ``LEARNKIT_DISTRIBUTED=0``)."""
    if os.environ.get("LEARNKIT_DISTRIBUTED", "1") != "0" and (launched_by_torchrun() or _initialized()):
        to_distributed(learn)


def shard_for_preds(learn: "Learner", dl: Iterable) -> Iterable:
    """The loader `Learner.get_preds` runs over: this rank's shard under DDP (then gathered), else ``dl``."""
    cb = getattr(learn, "distributed_trainer", None)
    return cb.shard(dl, training=False) if cb is not None else dl


def gather_preds(dl: Iterable, obj: Any) -> Any:
    """Whole-shard predictions (``None`` left as is) gathered from every rank in dataset order."""
    if not isinstance(dl, DistributedDL) or obj is None:
        return obj
    return dl.gather_all(obj)
