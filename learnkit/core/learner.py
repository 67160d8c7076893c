"""`Learner`: a model, its data, a loss and an optimizer, and the training loop — nothing else.

The loop (``fit`` → epochs → train/validate → batches) fires the events of `learnkit.core.callback`;
everything optional (recording, progress bars, schedules, early stopping, mixed-precision scaling of
gradients, checkpoints) is a callback. Read ``_do_one_batch`` to see exactly what one step does.
(This file is longer than learnkit's other modules on purpose: it is the one class a user reads to know
what training does, so its methods stay together; the machinery they call lives in ``callbacks/``,
``distributed.py``, ``checkpoint.py`` and ``export.py``.)

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> x = torch.randn(64, 2); y = x @ torch.tensor([[2.], [-1.]])
>>> dls = DataLoaders.from_dsets(TensorDataset(x, y), TensorDataset(x, y), bs=16, device="cpu")
>>> learn = Learner(dls, torch.nn.Linear(2, 1), loss_func=MSELossFlat(), lr=0.1, progress=False)
>>> learn.fit(20)
>>> learn.validate()[0] < 0.05
True
"""
from __future__ import annotations

import contextlib
import html
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .callback import (Callback, describe_training_loop, CancelBackwardException, CancelBatchException, CancelEpochException,
                       CancelFitException, CancelStepException, CancelTrainException, CancelValidException)
from .data import DataLoaders
from .distributed import (compile_learner, distrib_barrier, distrib_ctx, gather_preds, maybe_distribute,
                          shard_for_preds, to_distributed)
from .device import cat_nested as _cat_nested, default_device, to_cpu, to_device
from .precision import cuda_speedups, memory_format_for
from .sharding import unshuffled
from .metrics import Metric, as_metric
from .registry import register_learner
from .optim import LR, check_lr, check_wd as _check_wd, default_splitter, make_optimizer, spread_lr

if TYPE_CHECKING:  # pragma: no cover
    from .summary import LearnerSummary

__all__ = ["Learner"]


def _listify(o: Any) -> list:
    if o is None:
        return []
    if isinstance(o, (list, tuple)):
        return list(o)
    return [o]


@register_learner
class Learner:
    """Trains ``model`` on ``dls`` with ``loss_func`` and ``opt_func``.

    Args:
        dls: the `DataLoaders` (train, valid) to train on.
        model: any ``nn.Module``; it is moved to the device of ``dls`` (or ``device``).
        loss_func: ``loss(pred, *targets)``; defaults to the task's (``dls.loss_func``) when it has one.
        opt_func: an optimizer class or factory taking ``(param_groups, lr=...)``; AdamW by default.
        lr: the default learning rate of ``fit`` and friends.
        splitter: ``model -> list of parameter lists``, body first, head last (for freezing and
            discriminative learning rates).
        cbs: extra callbacks for every fit; metrics: `Metric` instances or ``f(pred, targ)`` functions.
        wd: weight decay (``None`` keeps the optimizer's default).
        path / model_dir: where ``save``/``load`` put checkpoints (``path/model_dir/name.pth``).
        train_bn: whether batch-norm layers in frozen groups keep training (``False``: they are held in
            eval mode, so a frozen body is truly constant).
        progress: show progress bars and the per-epoch table.
    """

    def __init__(self, dls: DataLoaders, model: nn.Module, loss_func: Callable | None = None,
                 opt_func: Callable = torch.optim.AdamW, lr: LR = 1e-3, splitter: Callable = default_splitter,
                 cbs: Callback | Sequence[Callback] | None = None, metrics: Any = None, wd: float | None = None,
                 path: str | Path | None = None, model_dir: str = "models", train_bn: bool = False,
                 device: str | torch.device | None = None, progress: bool = True):
        from .callbacks.progress import ProgressCallback
        from .callbacks.recorder import Recorder

        if not isinstance(dls, DataLoaders):
            raise TypeError(f"dls must be a learnkit DataLoaders, got {type(dls).__name__}; "
                            "wrap torch loaders with DataLoaders(train_dl, valid_dl)")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_lr(lr)
        _check_wd(wd)
        for arg, f in (("opt_func", opt_func), ("splitter", splitter)):
            if not callable(f):
                raise TypeError(f"{arg} must be callable, got {f!r} (e.g. opt_func=torch.optim.AdamW)")
        self.dls, self.lr, self.wd, self.splitter, self.opt_func = dls, lr, wd, splitter, opt_func
        self.device = default_device(device) if device is not None else dls.device
        self.dls.to(self.device)
        self.model = model.to(self.device)
        cuda_speedups(self.device)  # TF32 and cudnn.benchmark on CUDA (LEARNKIT_CUDA_SPEEDUPS=0 opts out)
        if loss_func is None:
            loss_func = getattr(dls, "loss_func", None)
            if loss_func is None:
                raise ValueError("no loss_func given and the DataLoaders has no default: "
                                 "pass loss_func=CrossEntropyLossFlat() or MSELossFlat()")
        if isinstance(loss_func, nn.Module):  # buffers such as class weights go where the model's outputs are
            loss_func.to(self.device)
        self.loss_func = loss_func
        self.metrics = metrics
        self.path = Path(path) if path is not None else Path(".")
        self.model_dir, self.train_bn, self.show_progress = model_dir, train_bn, progress
        self.opt: torch.optim.Optimizer | None = None
        self.precision: str = "fp32"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=False)
        self.training, self.epoch, self.n_epoch, self.iter, self.n_iter = False, 0, 0, 0, 0
        self.xb: tuple = ()
        self.yb: tuple = ()
        self.pred = self.loss = self.loss_grad = None
        self.cbs: list[Callback] = []
        self.add_cbs([Recorder(), ProgressCallback()] + _listify(cbs))
        self.ddp_model: nn.Module | None = None  # the DDP wrapper of `model` during a distributed fit
        maybe_distribute(self)  # joins DDP when torchrun started this process (distributed.py)

    # --- callbacks -----------------------------------------------------------------------------------
    @property
    def metrics(self) -> list[Metric]:
        """The metrics computed on the validation set each epoch (settable: ``learn.metrics = [accuracy]``)."""
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: Any) -> None:
        self._metrics = [as_metric(m) for m in _listify(metrics)]

    def add_cb(self, cb: Callback) -> "Learner":
        if isinstance(cb, type):
            cb = cb()
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {cb!r}")
        existing = getattr(self, cb.name, None)
        if existing is not None and not isinstance(existing, Callback):
            raise ValueError(f"a callback named {cb.name!r} would hide the Learner attribute of that name; "
                             "rename the callback class")
        cb.learn = self
        setattr(self, cb.name, cb)
        self.cbs.append(cb)
        self.cbs.sort(key=lambda c: (c.order, c.name))
        return self

    def add_cbs(self, cbs: Iterable[Callback]) -> "Learner":
        for cb in cbs:
            self.add_cb(cb)
        return self

    def remove_cb(self, cb: Callback) -> "Learner":
        if cb in self.cbs:
            self.cbs.remove(cb)
            if getattr(self, cb.name, None) is cb:
                delattr(self, cb.name)
        return self

    @contextlib.contextmanager
    def added_cbs(self, cbs: Callback | Sequence[Callback] | None) -> Iterator[None]:
        cbs = [cb() if isinstance(cb, type) else cb for cb in _listify(cbs)]
        self.add_cbs(cbs)
        try:
            yield
        finally:
            for cb in cbs:
                self.remove_cb(cb)

    @contextlib.contextmanager
    def removed_cbs(self, cbs: Sequence[Callback]) -> Iterator[None]:
        cbs = [cb for cb in cbs if cb in self.cbs]
        for cb in cbs:
            self.remove_cb(cb)
        try:
            yield
        finally:
            self.add_cbs(cbs)

    def __call__(self, event: str) -> None:
        for cb in list(self.cbs):
            cb(event)

    def _with_events(self, f: Callable[[], None], name: str, cancel: type[Exception]) -> bool:
        """Fire ``before_<name>``, run ``f``, fire ``after_<name>``; on ``cancel`` fire ``after_cancel_<name>``
        first. Returns whether ``f`` ran to its end."""
        done = False
        try:
            self(f"before_{name}")
            f()
            done = True
        except cancel:
            self(f"after_cancel_{name}")
        self(f"after_{name}")
        return done

    # --- optimizer and parameter groups --------------------------------------------------------------
    def param_groups(self) -> list[list[nn.Parameter]]:
        groups = [list(g) for g in self.splitter(self.model)]
        if not groups:
            raise ValueError("the splitter returned no parameter groups")
        return groups

    def create_opt(self, lr: LR | None = None) -> None:
        self.opt = make_optimizer(self.opt_func, self.param_groups(), self.lr if lr is None else lr, self.wd)

    def set_lr(self, lr: LR) -> None:
        """Set the learning rate of every parameter group (a float, a slice or a list)."""
        if self.opt is None:
            self.create_opt(lr)
        for pg, v in zip(self.opt.param_groups, spread_lr(lr, len(self.opt.param_groups))):
            pg["lr"] = v

    def freeze_to(self, n: int) -> None:
        """Freeze the first ``n`` parameter groups (negative counts from the end) and unfreeze the rest."""
        groups = self.param_groups()
        n = n if n >= 0 else len(groups) + n
        for i, g in enumerate(groups):
            for p in g:
                p.requires_grad_(i >= n)
        self.frozen_groups = min(n, len(groups))

    def freeze(self) -> None:
        """Freeze every parameter group but the last (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        self.freeze_to(0)

    def _hold_frozen_bn(self) -> None:
        if self.train_bn:
            return
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                ps = list(m.parameters(recurse=False))
                if ps and not any(p.requires_grad for p in ps):
                    m.eval()

    # --- precision -------------------------------------------------------------------------------------
    def to_fp16(self) -> "Learner":
        """fp16 autocast with a GradScaler on CUDA (conv nets also go channels-last there); on other devices
        warns and keeps fp32."""
        if self.device.type != "cuda":
            warnings.warn(f"fp16 mixed precision needs CUDA (device is {self.device}); training stays in fp32. "
                          "Use learn.to_bf16() for bfloat16 autocast on this device.", stacklevel=2)
            return self.to_fp32()
        self.precision = "fp16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=True)
        self._channels_last_on_cuda()
        return self

    def to_bf16(self) -> "Learner":
        """bfloat16 autocast (CUDA or CPU; conv nets also go channels-last on CUDA); no gradient scaling is needed."""
        self.precision = "bf16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=False)
        self._channels_last_on_cuda()
        return self

    def to_channels_last(self) -> "Learner":
        """Store conv weights (and so activations) channels-last, the layout tensor cores prefer on CUDA
        (``channels_last_3d`` for 3-D convolutions; a no-op when conv ranks are mixed)."""
        fmt = memory_format_for(self.model)
        if fmt is not None:
            self.model.to(memory_format=fmt)
        return self

    def _channels_last_on_cuda(self) -> None:
        if self.device.type == "cuda" and memory_format_for(self.model) is not None:
            self.to_channels_last()

    def compile(self, mode: str | None = None, fullgraph: bool = False, dynamic: bool | None = None,
                backend: str = "inductor") -> "Learner":
        """Opt-in ``torch.compile`` of the model, in place (``nn.Module.compile``: the weights' names do not
        change, so ``save``/``export`` work as before); under DDP the DDP wrapper is compiled instead. The
        first batches are slow while it compiles."""
        compile_learner(self, mode=mode, fullgraph=fullgraph, dynamic=dynamic, backend=backend)
        return self

    # --- distributed (torchrun); the machinery is in distributed.py ----------------------------------
    def to_distributed(self, sync_bn: bool = True, find_unused_parameters: bool = False,
                       backend: str | None = None) -> "Learner":
        """Train with DDP over the processes torchrun started; a no-op in a single process. Called
        automatically for a Learner created under torchrun (set ``LEARNKIT_DISTRIBUTED=0`` to opt out)."""
        return to_distributed(self, sync_bn=sync_bn, find_unused_parameters=find_unused_parameters, backend=backend)

    def distrib_ctx(self, sync_bn: bool = True, find_unused_parameters: bool = False,
                    backend: str | None = None) -> contextlib.AbstractContextManager:
        """``with learn.distrib_ctx(): learn.fine_tune(3)``: DDP inside the block, clean shutdown after it."""
        return distrib_ctx(self, sync_bn=sync_bn, find_unused_parameters=find_unused_parameters, backend=backend)

    def to_fp32(self) -> "Learner":
        self.precision = "fp32"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=False)
        return self

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    # --- the loop ------------------------------------------------------------------------------------
    def fit(self, n_epoch: int, lr: LR | None = None, wd: float | None = None,
            cbs: Callback | Sequence[Callback] | None = None, reset_opt: bool = False, start_epoch: int = 0,
            resume: str | Path | None = None) -> None:
        """Train for ``n_epoch`` epochs at a constant learning rate (schedules come from callbacks).

        ``resume="auto"`` (or a checkpoint path) writes a checkpoint every epoch and continues a killed run
        from its last one (see `learnkit.core.callbacks.checkpoint`)."""
        if isinstance(n_epoch, bool) or not isinstance(n_epoch, int) or n_epoch < 0:
            raise ValueError(f"n_epoch must be a non-negative integer, got {n_epoch!r}")
        if lr is not None:
            check_lr(lr)
        _check_wd(wd)
        if n_epoch and self.dls.train is None:
            raise ValueError("this DataLoaders has no training data (an inference-only one, e.g. from load_learner); "
                             "build task DataLoaders from your data to train")
        if n_epoch and len(self.dls.train) == 0:
            raise ValueError("the training loader has no batches: the training set is empty, or smaller than the "
                             "batch size with drop_last=True; lower bs or add data")
        if resume is not None:
            from .callbacks.checkpoint import resume_callbacks
            cbs = resume_callbacks(self, resume, cbs, start_epoch)
        if wd is not None:
            self.wd = wd
        with self.added_cbs(cbs):
            if reset_opt or self.opt is None:
                self.create_opt(lr)
            elif lr is not None:
                self.set_lr(lr)
            if wd is not None:
                for pg in self.opt.param_groups:
                    pg["weight_decay"] = wd
            self.n_epoch, self.start_epoch = n_epoch, start_epoch
            self.fit_exception: BaseException | None = None
            try:
                self._with_events(self._do_fit, "fit", CancelFitException)
            except BaseException as e:  # an error or Ctrl-C: let trackers close their run as failed, then re-raise
                self.fit_exception = e
                self("after_fit_exception")
                raise

    def _do_fit(self) -> None:
        for epoch in range(self.start_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpochException)

    def _do_epoch(self) -> None:
        self._set_phase(self.dls.train, training=True)
        self._with_events(self._do_train, "train", CancelTrainException)
        if self.dls.valid is not None:
            self._set_phase(self.dls.valid, training=False)
            self._with_events(self._do_validate, "validate", CancelValidException)

    def _set_phase(self, dl: Iterable, training: bool) -> None:
        self.dl, self.training, self.n_iter = dl, training, len(dl)

    def _do_train(self) -> None:
        self.model.train()
        self._hold_frozen_bn()
        self._all_batches()

    def _do_validate(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self._all_batches()

    def _all_batches(self) -> None:
        for i, batch in enumerate(self.dl):
            self.iter = i
            batch = self.dls.on_device(to_device(tuple(batch), self.device), self.training)
            self.xb, self.yb = tuple(batch[: self.dls.n_inp]), tuple(batch[self.dls.n_inp:])
            self._with_events(self._do_one_batch, "batch", CancelBatchException)

    def _do_one_batch(self) -> None:
        with self.autocast():
            self.pred = (self.model if self.ddp_model is None else self.ddp_model)(*self.xb)
            self("after_pred")
            if self.yb:
                self.loss_grad = self.loss_func(self.pred, *self.yb)
                self.loss = self.loss_grad.detach()
        self("after_loss")
        if not self.training or not self.yb:
            return
        if self._with_events(self._do_backward, "backward", CancelBackwardException):
            self._with_events(self._do_step, "step", CancelStepException)

    def _do_backward(self) -> None:
        self.scaler.scale(self.loss_grad).backward()

    def _do_step(self) -> None:
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)

    # --- schedules (the callbacks live in callbacks/schedule.py) ------------------------------------
    def fit_one_cycle(self, n_epoch: int, lr_max: LR | None = None, div: float = 25.0, div_final: float = 1e5,
                      pct_start: float = 0.25, wd: float | None = None, moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95),
                      cbs: Callback | Sequence[Callback] | None = None, reset_opt: bool = False, start_epoch: int = 0,
                      resume: str | Path | None = None) -> None:
        """Train with the one-cycle policy: warm up from ``lr_max/div`` to ``lr_max`` over ``pct_start`` of
        the steps, then anneal (cosine) to ``lr_max/div_final``; momentum moves the opposite way.
        ``resume="auto"`` continues a killed run from its last checkpoint (see `fit`)."""
        from .callbacks.schedule import OneCycleScheduler
        lr_max = self.lr if lr_max is None else lr_max
        check_lr(lr_max)
        if self.opt is None or reset_opt:
            self.create_opt(lr_max)
        sched = OneCycleScheduler(lr_max, div=div, div_final=div_final, pct_start=pct_start, moms=moms)
        self.fit(n_epoch, wd=wd, cbs=[sched] + _listify(cbs), start_epoch=start_epoch, resume=resume)

    def fit_flat_cos(self, n_epoch: int, lr: LR | None = None, div_final: float = 1e5, pct_start: float = 0.75,
                     wd: float | None = None, cbs: Callback | Sequence[Callback] | None = None,
                     reset_opt: bool = False, start_epoch: int = 0, resume: str | Path | None = None) -> None:
        """Train at a flat ``lr`` for ``pct_start`` of the steps, then anneal (cosine) to ``lr / div_final``."""
        from .callbacks.schedule import flat_cos_scheduler
        lr = self.lr if lr is None else lr
        check_lr(lr)
        if self.opt is None or reset_opt:
            self.create_opt(lr)
        sched = flat_cos_scheduler(lr, len(self.opt.param_groups), pct_start, div_final)
        self.fit(n_epoch, wd=wd, cbs=[sched] + _listify(cbs), start_epoch=start_epoch, resume=resume)

    def fit_sgdr(self, n_cycles: int, cycle_len: int, lr_max: LR | None = None, cycle_mult: int = 2,
                 wd: float | None = None, cbs: Callback | Sequence[Callback] | None = None,
                 reset_opt: bool = False) -> None:
        """SGDR: ``n_cycles`` cosine cycles from ``lr_max`` to 0, the ``i``-th lasting ``cycle_len * cycle_mult**i``
        epochs (``cycle_len * (2**n_cycles - 1)`` epochs in all with the default ``cycle_mult=2``)."""
        from .callbacks.schedule import sgdr_scheduler
        lr_max = self.lr if lr_max is None else lr_max
        check_lr(lr_max)
        if self.opt is None or reset_opt:
            self.create_opt(lr_max)
        sched, n_epoch = sgdr_scheduler(lr_max, len(self.opt.param_groups), n_cycles, cycle_len, cycle_mult)
        self.fit(n_epoch, wd=wd, cbs=[sched] + _listify(cbs))

    def show_training_loop(self) -> None:
        """Print every event of ``fit`` in order, with the callbacks that handle it (fastai's name)."""
        print(describe_training_loop(self.cbs))

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, wd: float | None = None,
                  cbs: Callback | Sequence[Callback] | None = None) -> None:
        """Transfer learning: train the head with the body frozen for ``freeze_epochs``, then unfreeze and
        train everything for ``epochs`` with learning rates from ``base_lr/lr_mult`` (body) to ``base_lr`` (head)."""
        check_lr(base_lr)
        self.freeze()
        if freeze_epochs:
            self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, wd=wd, cbs=cbs, reset_opt=True)
        base_lr /= 2
        self.unfreeze()
        if epochs:
            self.fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, wd=wd,
                               cbs=cbs, reset_opt=True)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True,
                show_plot: bool = True, suggest_funcs: Sequence[str | Callable] = ("valley",)):
        """Train briefly with an exponentially growing learning rate, record the loss, restore the weights
        and the optimizer, and return suggested learning rates (see `learnkit.core.callbacks.schedule.LRFinder`)."""
        from .callbacks.schedule import LRFinder
        finder = LRFinder(start_lr, end_lr, num_it, stop_div)
        n_epoch = max(1, -(-num_it // max(1, len(self.dls.train))))
        with self.no_bar():
            try:
                self.fit(n_epoch, cbs=[finder])
            finally:  # also on Ctrl-C: weights, optimizer and loss scale as they were
                finder.restore()
        if show_plot:
            self.recorder.plot_lr_find(suggestions=finder.suggest(suggest_funcs))
        return finder.suggest(suggest_funcs)

    # --- inference -----------------------------------------------------------------------------------
    def get_preds(self, ds_idx: int = 1, dl: Iterable | None = None, with_input: bool = False,
                  with_loss: bool = False, with_decoded: bool = False, act: Callable | None = None) -> tuple:
        """Predictions over a whole loader: ``(probs, targets[, decoded][, losses][, inputs])``.

        ``probs`` is the loss' activation of the model output (softmax for cross-entropy). The targets
        are ``None`` for loaders without labels (``dls.test_dl(items)``). Under DDP, predictions over the
        ``dls``' own loaders are sharded and gathered (call it on every rank); an explicit ``dl`` runs locally.
        """
        dl = shard_for_preds(self, self.dls[ds_idx]) if dl is None else dl  # under DDP: this rank's shard
        act = act or getattr(self.loss_func, "activation", lambda o: o)
        preds, targs, inputs, losses = [], [], [], []
        self.model.eval()
        with torch.no_grad(), self.autocast():
            for batch in dl:
                batch = self.dls.on_device(to_device(tuple(batch), self.device), False)
                xb, yb = tuple(batch[: self.dls.n_inp]), tuple(batch[self.dls.n_inp:])
                out = self.model(*xb)
                preds.append(to_cpu(act(out.float())))
                if yb:
                    targs.append(to_cpu(yb[0]))
                    if with_loss:
                        losses.append(to_cpu(self._item_losses(out, yb)))
                if with_input:
                    inputs.append(to_cpu(xb[0] if len(xb) == 1 else xb))
        probs = gather_preds(dl, torch.cat(preds) if preds else torch.empty(0))
        res = [probs, gather_preds(dl, torch.cat(targs) if targs else None)]
        if with_decoded:
            dec = getattr(self.loss_func, "decodes", lambda o: o)
            res.append(dec(probs))
        if with_loss:
            res.append(gather_preds(dl, torch.cat(losses) if losses else None))
        if with_input:
            res.append(gather_preds(dl, _cat_nested(inputs)))
        return tuple(res)

    def _item_losses(self, out: torch.Tensor, yb: tuple) -> torch.Tensor:
        return torch.stack([self.loss_func(out[i: i + 1], *(y[i: i + 1] for y in yb)).float()
                            for i in range(out.shape[0])])

    def predict(self, item: Any) -> tuple:
        """Predict one item: ``(decoded, decoded_index_or_value, probabilities)``."""
        dl = self.dls.test_dl([item])
        probs, _, dec = self.get_preds(dl=dl, with_decoded=True)
        return self.dls.decode_predict(item, dec[0], probs[0])

    def validate(self, ds_idx: int = 1, dl: Iterable | None = None) -> list[float]:
        """``[valid_loss, *metrics]`` over a loader (the validation set by default)."""
        dl = unshuffled(self.dls[ds_idx]) if dl is None else dl  # every item once, in order (on this rank)
        from .callbacks.recorder import Recorder
        rec = self.recorder
        with self.removed_cbs([cb for cb in self.cbs if not isinstance(cb, Recorder)]):
            self._set_phase(dl, training=False)
            self._with_events(self._do_validate, "validate", CancelValidException)
        return rec.valid_summary()

    # --- checkpoints ---------------------------------------------------------------------------------
    def _ckpt_path(self, name: str | Path) -> Path:
        p = Path(name)
        if p.suffix not in (".pth", ".pt", ".safetensors"):  # an explicit suffix is kept: "x.safetensors" stays
            p = p.with_name(p.name + ".pth")
        return p if p.is_absolute() or p.parent != Path(".") else self.path / self.model_dir / p

    def save(self, name: str | Path, with_opt: bool = True) -> Path:
        """Save the weights (and optimizer state) to ``path/model_dir/name.pth``; loads back with
        ``weights_only=True`` (tensors and numbers only, no pickled code)."""
        from .checkpoint import atomic_torch_save
        path = self._ckpt_path(name)
        state = {"model": self.model.state_dict()}
        if with_opt and self.opt is not None:
            state["opt"] = self.opt.state_dict()
        atomic_torch_save(state, path)
        return path

    def load(self, name: str | Path, with_opt: bool = True, strict: bool = True) -> "Learner":
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
            self.opt.load_state_dict(state["opt"])
        return self

    def export(self, fname: str | Path = "export.safetensors") -> Path:
        """Write the learner for inference to one safetensors file (weights + JSON config, no pickle);
        ``load_learner(path)`` rebuilds it in a fresh process. See `learnkit.core.export`."""
        from .export import export_learner
        return export_learner(self, fname)

    def export_onnx(self, path: str | Path = "export.onnx", opset: int | None = None) -> Path:
        """Write the model, with its preprocessing and output activation, as an ONNX graph with a dynamic
        batch, plus a JSON sidecar (``path.with_suffix('.json')``: classes, procs, tokenizer...). Needs
        ``pip install "learnkit[onnx]"``. See `learnkit.core.onnx`."""
        from .onnx import export_onnx
        return export_onnx(self, path, opset=opset)

    # --- display -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def no_bar(self) -> Iterator[None]:
        old, self.show_progress = self.show_progress, False
        try:
            yield
        finally:
            self.show_progress = old

    def summary(self, show: bool = True) -> "LearnerSummary":
        """fastai's per-layer table from one validation-mode batch: layer type, output shape, parameters and
        whether they train, then the input shape, parameter totals, optimizer, loss and callbacks. Printed
        (``show``; HTML in a notebook) and returned (a `learnkit.core.summary.LearnerSummary`)."""
        from .callbacks.progress import in_notebook
        from .summary import model_summary
        dl = self.dls.valid if self.dls.valid is not None else self.dls.train
        if dl is None:
            raise ValueError("summary runs the model on one batch, but this learner has no data (load_learner): "
                             "use learnkit.core.summary.model_summary(learn.model, xb) with a batch of yours")
        batch = self.dls.on_device(to_device(tuple(next(iter(dl))), self.device), False)
        groups = self.param_groups()
        n_frozen = next((i for i, g in enumerate(groups) if any(p.requires_grad for p in g)), len(groups))
        note = f"Model frozen up to parameter group #{n_frozen}" if n_frozen else ""
        with self.autocast():
            res = model_summary(self.model, tuple(batch[: self.dls.n_inp]),
                                optimizer=getattr(self.opt_func, "__name__", repr(self.opt_func)),
                                loss=repr(self.loss_func), callbacks=[type(c).__name__ for c in self.cbs],
                                frozen_note=note)
        if show:
            if in_notebook():
                from IPython.display import HTML, display
                display(HTML(res._repr_html_()))
            else:
                print(res)
        return res

    def _overview(self) -> dict[str, Any]:
        n = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"model": type(self.model).__name__, "parameters": f"{n:,} ({n_train:,} trainable)",
                "loss": type(self.loss_func).__name__, "optimizer": getattr(self.opt_func, "__name__", str(self.opt_func)),
                "metrics": ", ".join(m.name for m in self.metrics) or "-", "device": str(self.device),
                "precision": self.precision, "callbacks": ", ".join(type(c).__name__ for c in self.cbs)}

    def __repr__(self) -> str:
        return "Learner(" + ", ".join(f"{k}={v}" for k, v in self._overview().items()) + ")"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                       f"{html.escape(str(v))}</td></tr>" for k, v in self._overview().items())
        return f"<table>{rows}</table>{self.dls._repr_html_()}"

