"""`Learner`: a model, its data, a loss and an optimizer, and the training loop.

Read it top to bottom: ``__init__``, how events fire (``__call__``, ``_with_events``), the optimizer and
frozen parameter groups, then the loop (``fit`` → epochs → train/validate → batches; ``_do_one_batch`` is
exactly one step), then the recipes built on ``fit`` (``fit_one_cycle``, ``fine_tune``, ``lr_find``...).
The loop fires the events of `learnkit.core.callback`; everything optional (recording, progress bars,
schedules, early stopping, checkpoints) is a callback. The rest of the `Learner` API comes from one mixin
per concern: callbacks (``add_cb``...: `learnkit.core.callback`), mixed precision, channels-last, compile
and DDP (`learnkit.core.acceleration`), inference (``get_preds``, ``predict``, ``validate``:
`learnkit.core.inference`), ``save``/``load`` (`learnkit.core.checkpoint`), display (``summary``,
``no_bar``...: `learnkit.core.display`) and transfer learning (``fine_tune``: `learnkit.core.finetune`).

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> from learnkit import MSELossFlat
>>> x = torch.randn(64, 2); y = x @ torch.tensor([[2.], [-1.]])
>>> dls = DataLoaders.from_dsets(TensorDataset(x, y), TensorDataset(x, y), bs=16, device="cpu")
>>> learn = Learner(dls, torch.nn.Linear(2, 1), loss_func=MSELossFlat(), lr=0.1, progress=False)
>>> learn.fit(20)
>>> learn.validate()[0] < 0.05
True
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .acceleration import AccelerationMixin
from .callback import (Callback, CallbacksMixin, CancelBackwardException, CancelBatchException, CancelEpochException,
                       CancelFitException, CancelStepException, CancelTrainException, CancelValidException, _listify,
                       fitting, refuse_nested_fit)
from .callbacks.checkpoint import resume_callbacks
from .callbacks.profiler import profile_learner
from .callbacks.progress import ProgressCallback
from .callbacks.recorder import Recorder
from .callbacks.lr_finder import LRFinder
from .callbacks.schedule import OneCycleScheduler, flat_cos_scheduler, sgdr_scheduler
from .callbacks.steps import step_callbacks
from .checkpoint import CheckpointMixin
from .data import DataLoaders
from .device import default_device
from .display import DisplayMixin
from .distributed import maybe_distribute
from .export import export_learner
from .finetune import FineTuneMixin
from .inference import InferenceMixin
from .metricbase import Metric, as_metric
from .onnx import export_onnx as export_learner_onnx
from .paths import expand_path
from .optim import (LR, Adam, check_lr, check_wd as _check_wd, default_splitter, make_optimizer, n_splitter_groups,
                    norm_bias_params, splitter_group_of, spread_lr)
from .precision import cuda_speedups
from .registry import register_learner
from .validation import check_int

__all__ = ["Learner"]


@register_learner
class Learner(CallbacksMixin, AccelerationMixin, InferenceMixin, CheckpointMixin, DisplayMixin, FineTuneMixin):
    """Trains ``model`` on ``dls`` with ``loss_func`` and ``opt_func``.

    Args:
        dls: the `DataLoaders` (train, valid) to train on.
        model: any ``nn.Module``; it is moved to the device of ``dls`` (or ``device``).
        loss_func: ``loss(pred, *targets)``; defaults to the task's (``dls.loss_func``) when it has one.
        opt_func: an optimizer class or factory taking ``(param_groups, lr=...)``; `Adam` by default (torch AdamW with fastai's values).
        lr: the default learning rate of ``fit`` and friends.
        splitter: ``model -> list of parameter lists``, body first, head last (for freezing and
            discriminative learning rates).
        cbs: extra callbacks for every fit; metrics: `Metric` instances or ``f(pred, targ)`` functions.
        wd: weight decay (``None`` keeps the optimizer's default).
        wd_bn_bias: also decay the normalisation layers' parameters and the biases (`norm_bias_params`);
            ``False`` (fastai's default) leaves them out of weight decay, in param groups of their own after
            the splitter's (see `make_optimizer`). Settable (``learn.wd_bn_bias = True``) before a fit builds
            the optimizer.
        path / model_dir: where ``save``/``load`` put checkpoints (``path/model_dir/name.pth``).
        train_bn: whether batch-norm layers in frozen groups keep training (``False``: they are held in
            eval mode, so a frozen body is truly constant).
        progress: show progress bars and the per-epoch table.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(64, 2); y = (x[:, 0] > x[:, 1]).long()  # two classes
    >>> dls = DataLoaders(TensorLoader(x, y, bs=16, shuffle=True), TensorLoader(x, y, bs=32), device="cpu",
    ...                   vocab=["below", "above"])
    >>> learn = Learner(dls, torch.nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), metrics=accuracy, lr=0.5,
    ...                 progress=False)
    >>> learn.fit_one_cycle(5)
    >>> loss, acc = learn.validate()
    >>> acc > 0.9
    True
    """

    def __init__(self, dls: DataLoaders, model: nn.Module, loss_func: Callable | None = None,
                 opt_func: Callable = Adam, lr: LR = 1e-3, splitter: Callable = default_splitter,
                 cbs: Callback | Sequence[Callback] | None = None, metrics: Any = None, wd: float | None = None,
                 path: str | Path | None = None, model_dir: str = "models", train_bn: bool = False,
                 device: str | torch.device | None = None, progress: bool = True, wd_bn_bias: bool = False):
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
        if not isinstance(wd_bn_bias, bool):
            raise TypeError(f"wd_bn_bias must be True or False, got {wd_bn_bias!r}")
        self.dls, self.lr, self.wd, self.splitter, self.opt_func = dls, lr, wd, splitter, opt_func
        self.wd_bn_bias = wd_bn_bias
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
        self.path = expand_path(path) if path is not None else Path(".")
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

    # --- metrics and events (adding and removing callbacks: CallbacksMixin, in callback.py) ----------
    @property
    def metrics(self) -> list[Metric]:
        """The metrics computed on the validation set each epoch (settable: ``learn.metrics = [accuracy]``)."""
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: Any) -> None:
        self._metrics = [as_metric(m) for m in _listify(metrics)]

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
        """Build the optimizer over the splitter's groups (`make_optimizer`; ``wd_bn_bias=False``: normalisation
        and bias parameters in undecayed param groups of their own)."""
        no_decay = () if self.wd_bn_bias else norm_bias_params(self.model)
        self.opt = make_optimizer(self.opt_func, self.param_groups(), self.lr if lr is None else lr, self.wd,
                                  no_decay=no_decay)

    def set_lr(self, lr: LR) -> None:
        """Set the learning rate of every parameter group (a float, a slice or a list: one per splitter group)."""
        if self.opt is None:
            self.create_opt(lr)
        lrs = spread_lr(lr, n_splitter_groups(self.opt))
        for pg, i in zip(self.opt.param_groups, splitter_group_of(self.opt)):
            pg["lr"] = lrs[i]

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

    # --- the loop ------------------------------------------------------------------------------------
    def fit(self, n_epoch: int, lr: LR | None = None, wd: float | None = None,
            cbs: Callback | Sequence[Callback] | None = None, reset_opt: bool = False, start_epoch: int = 0,
            resume: str | Path | None = None, max_steps: int | None = None,
            validate_every: int | None = None) -> None:
        """Train for ``n_epoch`` epochs at a constant learning rate (schedules come from callbacks).

        ``resume="auto"`` (or a checkpoint path) writes a checkpoint every epoch and continues a killed run
        from its last one (see `learnkit.core.callbacks.checkpoint`). ``max_steps`` stops after that many
        training steps; ``validate_every`` validates every that many steps (see `learnkit.core.callbacks.steps`)."""
        refuse_nested_fit(self)  # a callback calling learn.fit inside a fit
        check_int("n_epoch", n_epoch, low=0)
        if lr is not None:
            check_lr(lr)
        _check_wd(wd)
        if n_epoch and self.dls.train is None:
            raise ValueError("this DataLoaders has no training data (an inference-only one, e.g. from load_learner); "
                             "build task DataLoaders from your data to train")
        if n_epoch and len(self.dls.train) == 0:
            raise ValueError("the training loader has no batches: the training set is empty, or smaller than the "
                             "batch size with drop_last=True; lower bs or add data")
        cbs = step_callbacks(cbs, max_steps, validate_every)
        if resume is not None:
            cbs = resume_callbacks(self, resume, cbs, start_epoch)
        if wd is not None:
            self.wd = wd
        with fitting(self), self.added_cbs(cbs):
            if reset_opt or self.opt is None:
                self.create_opt(lr)
            elif lr is not None:
                self.set_lr(lr)
            if wd is not None:
                for pg in self.opt.param_groups:
                    if not pg.get("no_wd", False):  # wd_bn_bias=False: normalisation and biases stay undecayed
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
        self._set_phase(self.dls[0], training=True)  # the loaders themselves: each batch is prepared once, below
        self._with_events(self._do_train, "train", CancelTrainException)
        if self.dls.valid is not None:
            self._set_phase(self.dls[1], training=False)
            self._with_events(self._do_validate, "validate", CancelValidException)

    def _set_phase(self, dl: Iterable, training: bool) -> None:
        self.dl, self.training, self.n_iter = dl, training, len(dl)
        self.first_iter = 0  # a mid-epoch resume starts later (CheckpointCallback sets it in before_train)

    def _do_train(self) -> None:
        self.model.train()
        self._hold_frozen_bn()
        self._all_batches()

    def _do_validate(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self._all_batches()

    def _all_batches(self) -> None:
        for i, batch in enumerate(self.dl, self.first_iter):
            self.iter = i
            batch = self.dls.prepare_batch(batch, self.training, self.device)
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
        lr = self.lr if lr is None else lr
        check_lr(lr)
        if self.opt is None or reset_opt:
            self.create_opt(lr)
        sched = flat_cos_scheduler(lr, n_splitter_groups(self.opt), pct_start, div_final)
        self.fit(n_epoch, wd=wd, cbs=[sched] + _listify(cbs), start_epoch=start_epoch, resume=resume)

    def fit_sgdr(self, n_cycles: int, cycle_len: int, lr_max: LR | None = None, cycle_mult: int = 2,
                 wd: float | None = None, cbs: Callback | Sequence[Callback] | None = None,
                 reset_opt: bool = False) -> None:
        """SGDR: ``n_cycles`` cosine cycles from ``lr_max`` to 0, the ``i``-th lasting ``cycle_len * cycle_mult**i``
        epochs (``cycle_len * (2**n_cycles - 1)`` epochs in all with the default ``cycle_mult=2``)."""
        lr_max = self.lr if lr_max is None else lr_max
        check_lr(lr_max)
        if self.opt is None or reset_opt:
            self.create_opt(lr_max)
        sched, n_epoch = sgdr_scheduler(lr_max, n_splitter_groups(self.opt), n_cycles, cycle_len, cycle_mult)
        self.fit(n_epoch, wd=wd, cbs=[sched] + _listify(cbs))

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True,
                show_plot: bool = True, suggest_funcs: Sequence[str | Callable] = ("valley",)):
        """Train briefly with an exponentially growing learning rate, record the loss, restore the weights
        and the optimizer, and return suggested learning rates (see `learnkit.core.callbacks.lr_finder.LRFinder`)."""
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

    def profile(self, n_batches: int = 50, skip: int = 5, trace: str | Path | None = None, show: bool = True):
        """Train ``n_batches`` batches (after ``skip`` warm-up ones), print where each step's time goes (data wait,
        host→device, forward, loss, backward, step, callbacks, validation) and the bottleneck's knob, then put the
        weights back. ``trace=path`` adds a torch.profiler Chrome trace. See `learnkit.core.callbacks.profiler`."""
        return profile_learner(self, n_batches, skip=skip, trace=trace, show=show)

    # --- export (the machinery is in export.py and onnx.py) -----------------------------------------
    def export(self, fname: str | Path = "export.safetensors") -> Path:
        """Write the learner for inference to one safetensors file (weights + JSON config, no pickle);
        ``load_learner(path)`` rebuilds it in a fresh process. See `learnkit.core.export`."""
        return export_learner(self, fname)

    def export_onnx(self, path: str | Path = "export.onnx", opset: int | None = None) -> Path:
        """Write the model, with its preprocessing and output activation, as an ONNX graph with a dynamic
        batch, plus a JSON sidecar (``path.with_suffix('.json')``: classes, procs, tokenizer...). Needs
        ``pip install "learnkit[onnx]"``. See `learnkit.core.onnx`."""
        return export_learner_onnx(self, path, opset=opset)
