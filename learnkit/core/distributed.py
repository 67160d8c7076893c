"""Running under ``torchrun``: one process per device, PyTorch's own DistributedDataParallel (DDP).

The same script runs unchanged on one device or under ``torchrun --nproc_per_node=N script.py``: a
`Learner` created in a process that torchrun started joins the process group (NCCL on CUDA, gloo on CPU)
and adds a `DistributedTrainer`, which during ``fit``

- wraps the model in ``DistributedDataParallel`` (weights broadcast from rank 0, gradients averaged);
- shards the training set with a ``DistributedSampler`` (the same seed on every rank, ``set_epoch`` at each
  epoch, continuing from the resumed epoch after ``resume=``) — or, for a loader with its own seeded batch
  sampler (text's length buckets), deals that sampler's batches to the ranks; a language model's
  `LMDataLoader` gives each rank its own contiguous rows and is read whole for validation — and the validation set too
  (in dataset order, every item once), then gathers each validation batch's predictions and targets from
  every rank and drops the items the sampler repeated to even out the shards: losses and metrics are
  computed over every item exactly once and are identical on every rank;
- averages the training loss over ranks once per epoch (no per-batch collective), so every rank logs the
  same epoch numbers and takes the same decisions (early stopping); per-batch decisions (stopping on NaN,
  lr_find's divergence test) are agreed with one small collective (`any_rank`);
- with ``fit(..., validate_every=N)`` makes each rank's shard a stream of rounds of N steps (`steps_loader`),
  so that the ranks validate together every N steps.

Progress bars and files (checkpoints, exports, CSV logs) come from rank 0 only; `Learner.load` waits
for rank 0 to have written. The process group is destroyed at exit (or when `distrib_ctx` ends); a rank
that raises leaves without waiting for the others, so the job ends with its traceback instead of hanging.
``learn.compile()`` compiles the DDP wrapper at each fit; ``device="cuda"`` means ``cuda:LOCAL_RANK``. The
pieces: `learnkit.core.process_group` (rank, world size, the group) and `learnkit.core.sharding` (sharded
loaders, gathering).

Explicit use: ``learn.to_distributed()`` or ``with learn.distrib_ctx(): learn.fit(...)``. Set
``LEARNKIT_DISTRIBUTED=0`` to keep a torchrun-started process out of the group. In a single process all
of this is a no-op:

>>> rank_distrib(), num_distrib(), is_rank0()
(0, 1, True)
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from .callback import Callback
from .process_group import (_comm_device, _initialized, distrib_barrier, is_rank0, launched_by_torchrun, num_distrib,
                            rank_distrib, setup_distrib, teardown_distrib)
from .sharding import (DistributedDL, IterableShard, _broadcast_int, _is_shuffled, _loader_seed, is_iterable_loader,
                       unshuffled)
from .steps import StepsLoader

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["rank_distrib", "num_distrib", "is_rank0", "launched_by_torchrun", "setup_distrib", "teardown_distrib",
           "distrib_barrier", "DistributedDL", "DistributedTrainer", "to_distributed", "detach_distributed",
           "distrib_ctx", "maybe_distribute", "compile_learner", "move_learner", "shard_for_preds", "gather_preds"]

# --- the callback ----------------------------------------------------------------------------------------
class DistributedTrainer(Callback):
    """DDP for the duration of each ``fit`` (see the module docstring). Added by `to_distributed`.

    ``find_unused_parameters``, ``bucket_cap_mb``, ``gradient_as_bucket_view`` go to ``DistributedDataParallel``
    (which also copies rank 0's buffers at each forward; before validation they are copied once more, so
    every rank validates the very same model).

    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.to_distributed() is learn  # under torchrun it adds a DistributedTrainer; in one process, nothing
    True
    >>> [type(cb).__name__ for cb in learn.cbs]
    ['Recorder', 'ProgressCallback']
    >>> DistributedTrainer(find_unused_parameters=True).order  # first of all callbacks: they all see the shards
    -30
    """

    order = -30  # first: every other callback (schedules, recorder, progress, loader swaps) sees the shards

    def __init__(self, find_unused_parameters: bool = False, bucket_cap_mb: float | None = None,
                 gradient_as_bucket_view: bool = True):
        self.find_unused_parameters, self.bucket_cap_mb = find_unused_parameters, bucket_cap_mb
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self._shards: dict[tuple[int, bool], tuple[Any, DistributedDL]] = {}
        self._epoch_base = 0  # epochs of the earlier fits of this learner
        self._steps: StepsLoader | None = None  # this fit's shard as rounds of N steps (fit(..., validate_every=N))
        self.silenced = False  # whether to_distributed turned progress off (on ranks > 0)
        self.compile_kw: dict[str, Any] | None = None  # set by Learner.compile: compile the DDP wrapper

    def shard(self, dl: Any, training: bool) -> Any:
        """This rank's `DistributedDL` of ``dl`` (built once per loader and use, and kept): for training,
        shuffled when ``dl`` is; otherwise in dataset order with every item once (``drop_last=False``). A loader
        with a ``for_rank(rank, world_size, seed)`` method (`LMDataLoader`) makes its own training shard."""
        if isinstance(dl, (DistributedDL, IterableShard)):
            return dl
        if is_iterable_loader(dl):  # a stream splits itself by rank (training) or is read whole (validation)
            return IterableShard(dl)
        key = (id(dl), training)
        hit = self._shards.get(key)
        if hit is not None and hit[0] is dl:
            return hit[1]
        seed = _broadcast_int(_loader_seed(dl))
        if callable(getattr(dl, "for_rank", None)):
            # a loader that splits itself by rank (`LMDataLoader`: contiguous rows, which a per-item sampler would
            # cut apart): its own rows for training; validation is read whole on every rank, so the metrics agree
            ddl = dl.for_rank(dist.get_rank(), dist.get_world_size(), seed) if training else IterableShard(dl)
            self._shards[key] = (dl, ddl)
            return ddl
        shuffle = training and _is_shuffled(dl, True)
        ddl = DistributedDL(dl, dist.get_rank(), dist.get_world_size(), shuffle=shuffle, seed=seed,
                            drop_last=None if training else False)
        self._shards[key] = (dl, ddl)
        return ddl

    def steps_loader(self, dl: Any, n_steps: int) -> StepsLoader:
        """This rank's training shard of ``dl`` as epochs of ``n_steps`` batches, for ``fit(..., validate_every=
        n_steps)`` (`ValidateEveryCallback` calls it in ``before_fit``). Every rank takes ``n_steps`` steps between
        validations whatever its shard's length, so the ranks stay in lockstep; each pass over the shard reshuffles
        it (``set_epoch``: the same order on every rank, continuing after the earlier fits' epochs)."""
        self._steps = StepsLoader(self.shard(dl, training=True), n_steps, first_epoch=self._epoch_base)
        return self._steps

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
            if self.compile_kw is not None:  # compiled around DDP, so that its gradient buckets overlap backward
                self.learn.ddp_model.compile(**self.compile_kw)

    def before_train(self):
        if self._steps is not None and self.learn.dl is self._steps:
            return  # validate_every: already this rank's shard, its epoch set at each pass over it
        ddl = self.shard(self.learn.dl, training=True)
        # the shuffle follows the epoch: a run resumed at epoch k (learn.epoch == k) draws epoch k's order,
        # not epoch 0's again; later fits (fine_tune's second phase) continue after the earlier ones
        ddl.set_epoch(self._epoch_base + self.learn.epoch)
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
            # no per-batch all-reduce of the loss (a host sync every batch): the Recorder sums the epoch's
            # training loss over ranks once, and per-batch decisions (NaN check, lr_find) use `any_rank`
            return
        learn.pred = learn.dl.gather(learn.pred)
        if learn.yb:
            learn.yb = learn.dl.gather(tuple(learn.yb))
            with torch.no_grad(), learn.autocast():
                learn.loss = learn.loss_func(learn.pred, *learn.yb).detach()
            learn.loss_grad = learn.loss

    def after_fit(self):
        passes = 0 if self._steps is None else self._steps.passes  # validate_every: rounds or passes, the more
        self._epoch_base += max(self.learn.n_epoch, passes)
        self._steps = None
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
        move_learner(learn, torch.device("cuda", torch.cuda.current_device()))
        if sync_bn:
            learn.model = nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)
    cb = DistributedTrainer(find_unused_parameters=find_unused_parameters)
    cb.silenced = rank_distrib() != 0 and learn.show_progress
    if cb.silenced:
        learn.show_progress = False
    learn.add_cb(cb)
    return learn


def compile_learner(learn: "Learner", **kw: Any) -> None:
    """``torch.compile`` for `Learner.compile`: the model in place, or under DDP the DDP wrapper at each fit
    (compiling the inner model before DDP wraps it would stop gradient communication from overlapping
    with the backward pass)."""
    cb = getattr(learn, "distributed_trainer", None)
    if cb is None:
        learn.model.compile(**kw)
    else:
        cb.compile_kw = kw


def move_learner(learn: "Learner", dev: torch.device) -> None:
    """Move everything of ``learn`` that lives on a device to ``dev``: the batches' destination, the model, and
    the loss' buffers (class weights, ``pos_weight``), which must sit with the model's outputs."""
    if learn.device == dev:
        return
    learn.device = dev
    learn.dls.to(dev)
    learn.model.to(dev)
    if isinstance(learn.loss_func, nn.Module):
        learn.loss_func.to(dev)


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
    failed = True
    try:
        yield learn
        failed = False
    finally:
        detach_distributed(learn)
        if created and _initialized():  # after an error the peers may be stuck in a collective: no waiting
            teardown_distrib(wait=not failed)


def maybe_distribute(learn: "Learner") -> None:
    """Called by every new `Learner`: join DDP when torchrun started this process (unless
    ``LEARNKIT_DISTRIBUTED=0``)."""
    if os.environ.get("LEARNKIT_DISTRIBUTED", "1") != "0" and (launched_by_torchrun() or _initialized()):
        to_distributed(learn)


def shard_for_preds(learn: "Learner", dl: Iterable) -> Iterable:
    """The loader `Learner.get_preds`/`validate` run over: every item once, in dataset order (an unshuffled
    copy without ``drop_last`` for the training loader); under DDP this rank's shard of it (then gathered)."""
    cb = getattr(learn, "distributed_trainer", None)
    return cb.shard(dl, training=False) if cb is not None else unshuffled(dl)


def gather_preds(dl: Iterable, obj: Any) -> Any:
    """Whole-shard predictions (``None`` left as is) gathered from every rank in dataset order."""
    if not isinstance(dl, DistributedDL) or obj is None:
        return obj
    return dl.gather_all(obj)
