"""Callbacks that watch a monitored value: early stopping, saving the best model, reducing the learning rate on a
plateau, stopping on NaN.

The monitored value is read by its name (``'valid_loss'``, ``'train_loss'`` or a metric's name) from the
`Recorder` after each epoch; ``mode`` says whether lower (``'min'``) or higher (``'max'``) is better, and
``'auto'`` tells from the name and the metric (`monitor_mode`).

>>> monitor_mode("valid_loss"), monitor_mode("accuracy"), monitor_mode("error_rate"), monitor_mode("mean_iou")
('min', 'max', 'min', 'max')
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..callback import Callback, CancelFitException
from ..optim import head_param_group
from ..process_group import any_rank, is_rank0

__all__ = ["TrackerCallback", "EarlyStoppingCallback", "SaveModelCallback", "TerminateOnNaNCallback",
           "ReduceLROnPlateau", "monitor_mode"]

#: Words (or the start of words) of a monitored name that say lower, or higher, is better.
_LOWER_IS_BETTER = ("loss", "err", "mse", "mae", "msle", "rmse", "rmspe", "mape", "perplexity", "nll")
_HIGHER_IS_BETTER = ("acc", "f1", "fbeta", "r2", "dice", "iou", "jaccard", "precision", "recall", "auc", "roc",
                     "kappa", "matthews", "mcc", "corr", "pearson", "spearman")
#: fastai's ``comp=`` argument, as a mode.
_COMP_MODES: dict[Any, str] = {np.less: "min", np.less_equal: "min", operator.lt: "min", operator.le: "min",
                               np.greater: "max", np.greater_equal: "max", operator.gt: "max", operator.ge: "max"}


def monitor_mode(name: str, metric: Any = None) -> str:
    """``'min'`` or ``'max'``: whether lower or higher values of the monitored ``name`` are better.

    A ``metric`` that says ``higher_is_better = False`` is ``'min'``. Otherwise a name with a word such as loss,
    error, mse, rmse or perplexity is ``'min'``, one with accuracy, f1, r2, dice, iou, precision, recall or auc
    is ``'max'``; any other name follows its metric's ``higher_is_better`` (``'max'`` unless it says otherwise,
    as in fastai), and is ``'min'`` when it is not a metric's.

    >>> monitor_mode("train_loss"), monitor_mode("top_k_accuracy"), monitor_mode("r2_score"), monitor_mode("my_err")
    ('min', 'max', 'max', 'min')
    """
    if metric is not None and not getattr(metric, "higher_is_better", True):
        return "min"
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    if any(w.startswith(_LOWER_IS_BETTER) for w in words):
        return "min"
    if any(w.startswith(_HIGHER_IS_BETTER) for w in words):
        return "max"
    return "max" if metric is not None else "min"


class TrackerCallback(Callback):
    """Tracks ``monitor`` (``'valid_loss'``, ``'train_loss'`` or a metric's name), read by name from the
    `Recorder` after each epoch: ``best`` is its best value so far, ``new_best`` whether this epoch set it.

    ``mode``: ``'min'`` (lower is better), ``'max'`` (higher is better) or ``'auto'`` (from the name and the
    metric: see `monitor_mode`). ``comp`` is fastai's way to say it (``np.less`` or ``np.greater``); pass one
    of the two. An improvement must beat the best by ``min_delta``.

    >>> import torch
    >>> class BestEpoch(TrackerCallback):  # a tracker only adds what to do with `new_best`
    ...     def after_epoch(self):
    ...         super().after_epoch()
    ...         if self.new_best:
    ...             self.best_epoch = self.learn.epoch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> cb = BestEpoch(monitor="train_loss")
    >>> learn.fit(3, cbs=cb)
    >>> cb.resolved_mode, cb.best == min(row[0] for row in learn.recorder.values)  # row: [train_loss, valid_loss]
    ('min', True)
    """

    order = 70  # after the Recorder has written the epoch's values

    def __init__(self, monitor: str = "valid_loss", comp: Callable | None = None, min_delta: float = 0.0,
                 reset_on_fit: bool = True, *, mode: str = "auto"):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if comp is not None:
            if comp not in _COMP_MODES:
                raise TypeError(f"comp must be np.less or np.greater, got {comp!r}; or pass mode='min' or 'max'")
            if mode != "auto" and _COMP_MODES[comp] != mode:
                raise ValueError(f"comp={comp!r} and mode={mode!r} disagree; pass one of them")
            mode = _COMP_MODES[comp]
        self.monitor, self.comp, self.min_delta, self.reset_on_fit = monitor, comp, min_delta, reset_on_fit
        self.mode = mode
        self.best = None

    def before_fit(self):
        names = self.learn.recorder.metric_names[1:-1]
        if self.monitor not in names:
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, which is not recorded; "
                             f"choose one of {names}")
        metric = next((m for m in self.learn.metrics if m.name == self.monitor), None)
        self.resolved_mode = self.mode if self.mode != "auto" else monitor_mode(self.monitor, metric)
        if self.reset_on_fit or self.best is None:
            self.best = -math.inf if self.resolved_mode == "max" else math.inf
        self.new_best = False

    def state_dict(self) -> dict:
        """What a resumed run needs (see `CheckpointCallback`)."""
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]

    def monitored_value(self) -> float:
        """This epoch's value of ``monitor``, by name from the `Recorder`."""
        record = self.learn.recorder.final_record()
        if self.monitor not in record:  # the metrics were changed during the fit
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, which this epoch did not record; "
                             f"it recorded {list(record)}")
        return record[self.monitor]

    def after_epoch(self):
        value = self.monitored_value()
        if self.resolved_mode == "max":
            better = value - self.min_delta > self.best
        else:
            better = value + self.min_delta < self.best
        self.new_best = bool(math.isfinite(value) and better)
        if self.new_best:
            self.best = value


class PatienceCallback(TrackerCallback):
    """Counts the epochs since ``monitor`` last improved and calls ``on_plateau()`` after ``patience`` of them
    (the shared part of early stopping and learning-rate reduction)."""

    def __init__(self, monitor: str = "valid_loss", comp: Callable | None = None, min_delta: float = 0.0,
                 patience: int = 1, reset_on_fit: bool = True, *, mode: str = "auto"):
        super().__init__(monitor, comp, min_delta, reset_on_fit, mode=mode)
        self.patience = patience

    def before_fit(self):
        self.wait = 0
        super().before_fit()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.wait = state["wait"]

    def after_epoch(self):
        super().after_epoch()
        if self.new_best:
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.on_plateau()

    def on_plateau(self) -> None:
        raise NotImplementedError


class EarlyStoppingCallback(PatienceCallback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> es = EarlyStoppingCallback(monitor="valid_loss", min_delta=1e-3, patience=2)
    >>> learn.fit(10, lr=1e-9, cbs=es)  # a learning rate too small to improve anything: it stops early
    >>> len(learn.recorder.values), es.stopped_epoch  # epoch 0 set the best; epochs 1 and 2 did not beat it
    (3, 2)
    """

    def before_fit(self):
        self.stopped_epoch = None
        super().before_fit()

    def on_plateau(self) -> None:
        self.stopped_epoch = self.learn.epoch
        raise CancelFitException()


class ReduceLROnPlateau(PatienceCallback):
    """Divide every learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs
    (never below ``min_lr``). Use it with `Learner.fit` (a schedule such as one-cycle would overwrite the rates).

    >>> import torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.fit(3, lr=1e-9, cbs=ReduceLROnPlateau(monitor="valid_loss", min_delta=1e-3, patience=1, factor=10))
    Epoch 1: reducing lr to 1e-10
    Epoch 2: reducing lr to 1e-11
    """

    def __init__(self, monitor: str = "valid_loss", comp: Callable | None = None, min_delta: float = 0.0,
                 patience: int = 1, factor: float = 10.0, min_lr: float = 0.0, reset_on_fit: bool = True, *,
                 mode: str = "auto"):
        if factor <= 1:
            raise ValueError(f"factor divides the learning rate and must be > 1, got {factor!r}")
        super().__init__(monitor, comp, min_delta, patience, reset_on_fit, mode=mode)
        self.factor, self.min_lr = factor, min_lr

    def on_plateau(self) -> None:
        self.wait = 0
        for pg in self.learn.opt.param_groups:
            pg["lr"] = max(pg["lr"] / self.factor, self.min_lr)
        print(f"Epoch {self.learn.epoch}: reducing lr to {head_param_group(self.learn.opt)['lr']:.3g}")


class SaveModelCallback(TrackerCallback):
    """Save the model when ``monitor`` improves (``fname``), or every epoch (``every_epoch=True``:
    ``fname_<epoch>``); at the end of training, load the best weights back (``at_end=False``).

    ``top_k=k`` keeps the ``k`` best epochs instead, as ``fname_<epoch>`` files (a file that falls out of
    the k best is deleted; ``top_files`` lists them, best first); the best is loaded back at the end. With
    ``fit(..., validate_every=N)`` an epoch is N steps.

    >>> import tempfile, torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 path=tempfile.mkdtemp(), progress=False)
    >>> cb = SaveModelCallback(monitor="valid_loss", fname="best")
    >>> learn.fit(3, cbs=cb)  # saves models/best.pth at each new best, and loads the best weights back at the end
    >>> best = torch.load(learn.path / "models" / "best.pth", weights_only=True)["model"]
    >>> [p.name for p in (learn.path / "models").iterdir()], torch.equal(best["weight"], learn.model.weight)
    (['best.pth'], True)
    >>> top = SaveModelCallback(fname="top", top_k=2)
    >>> learn.fit(4, cbs=top)
    >>> len(top.top_files), sorted(p.name for p in (learn.path / "models").glob("top_*"))  == sorted(
    ...     p.name for _, _, p in top.top_files)
    (2, True)
    """

    def __init__(self, monitor: str = "valid_loss", comp: Callable | None = None, min_delta: float = 0.0,
                 fname: str = "model", every_epoch: bool = False, at_end: bool = False, with_opt: bool = False,
                 reset_on_fit: bool = True, *, mode: str = "auto", top_k: int | None = None):
        super().__init__(monitor, comp, min_delta, reset_on_fit, mode=mode)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k is how many of the best checkpoints to keep, a positive integer; got {top_k!r}")
        self.fname, self.every_epoch, self.at_end, self.with_opt = fname, every_epoch, at_end, with_opt
        self.top_k = top_k
        self.top_files: list[tuple[float, int, Path]] = []  # (value, epoch, path), best first
        self.best_epoch = None

    def before_fit(self):
        super().before_fit()
        if self.reset_on_fit:
            self.top_files = []

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best_epoch": self.best_epoch,
                "top_files": [[v, e, str(p)] for v, e, p in self.top_files]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.best_epoch = state["best_epoch"]
        self.top_files = [(v, e, Path(p)) for v, e, p in state.get("top_files", [])]

    def _keep_top_k(self) -> None:
        value, epoch = self.monitored_value(), self.learn.epoch
        if not math.isfinite(value):
            return
        key = (lambda t: -t[0]) if self.resolved_mode == "max" else (lambda t: t[0])
        if len(self.top_files) >= self.top_k and key((value, 0, None)) >= key(self.top_files[-1]):
            return  # not among the k best
        path = self.learn.save(f"{self.fname}_{epoch}", with_opt=self.with_opt)
        self.top_files = sorted(self.top_files + [(value, epoch, path)], key=key)
        for _, _, old in self.top_files[self.top_k:]:
            if is_rank0():
                old.unlink(missing_ok=True)
        self.top_files = self.top_files[: self.top_k]
        self.best_epoch = self.top_files[0][1]

    def after_epoch(self):
        if self.every_epoch:
            self.learn.save(f"{self.fname}_{self.learn.epoch}", with_opt=self.with_opt)
            return
        super().after_epoch()
        if self.top_k is not None:
            self._keep_top_k()
            return
        if self.new_best:
            self.best_epoch = self.learn.epoch
            self.learn.save(self.fname, with_opt=self.with_opt)

    def after_fit(self):
        if self.every_epoch or self.at_end or self.best_epoch is None:
            return
        if self.top_k is not None:
            if self.top_files:
                self.learn.load(self.top_files[0][2], with_opt=False)
            return
        self.learn.load(self.fname, with_opt=False)


class TerminateOnNaNCallback(Callback):
    """Stop training as soon as the training loss is NaN or infinite, before the bad loss is
    back-propagated into the weights.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.full((8, 1), float("nan")), bs=4)  # NaN targets: a NaN loss
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> cb = TerminateOnNaNCallback()
    >>> learn.fit(5, cbs=cb)
    >>> cb.terminated_at, bool(torch.isfinite(learn.model.weight).all())  # (epoch, batch); the weights are untouched
    ((0, 0), True)
    """

    order = 40
    run_valid = False

    def after_loss(self):
        """Reads the loss every batch (a host sync: this callback is opt-in); under DDP all ranks stop together."""
        if self.learn.loss is None:
            return
        bad = not math.isfinite(float(self.learn.loss))
        if getattr(self.learn, "distributed_trainer", None) is not None:
            bad = any_rank(bad)
        if bad:
            self.terminated_at = (self.learn.epoch, self.learn.iter)
            raise CancelFitException()
