"""Callbacks that watch a monitored value: early stopping, saving the best model, stopping on NaN."""
from __future__ import annotations

import math

import numpy as np

from ..callback import Callback, CancelFitException
from ..process_group import any_rank

__all__ = ["TrackerCallback", "EarlyStoppingCallback", "SaveModelCallback", "TerminateOnNaNCallback",
           "ReduceLROnPlateau"]


class TrackerCallback(Callback):
    """Tracks ``monitor`` (``'valid_loss'``, ``'train_loss'`` or a metric name) after each epoch.

    ``comp`` is ``np.less`` or ``np.greater``; by default ``less`` for losses and for metrics whose
    ``higher_is_better`` is false, ``greater`` otherwise. An improvement must beat the best by ``min_delta``.
    """

    order = 70  # after the Recorder has written the epoch's values

    def __init__(self, monitor: str = "valid_loss", comp=None, min_delta: float = 0.0, reset_on_fit: bool = True):
        self.monitor, self.comp, self.min_delta, self.reset_on_fit = monitor, comp, min_delta, reset_on_fit
        self.best = None

    def before_fit(self):
        names = self.learn.recorder.metric_names[1:-1]
        if self.monitor not in names:
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, which is not recorded; "
                             f"choose one of {names}")
        self.idx = names.index(self.monitor)
        if self.comp is None:
            higher = False
            if self.idx >= 2:
                higher = self.learn.metrics[self.idx - 2].higher_is_better
            self.comp = np.greater if higher else np.less
        if self.reset_on_fit or self.best is None:
            self.best = -math.inf if self.comp is np.greater else math.inf
        self.new_best = False

    def state_dict(self) -> dict:
        """What a resumed run needs (see `CheckpointCallback`)."""
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]

    def after_epoch(self):
        value = self.learn.recorder.values[-1][self.idx]
        delta = self.min_delta if self.comp is np.greater else -self.min_delta
        self.new_best = bool(math.isfinite(value) and self.comp(value - delta, self.best))
        if self.new_best:
            self.best = value


class PatienceCallback(TrackerCallback):
    """Counts the epochs since ``monitor`` last improved and calls ``on_plateau()`` after ``patience`` of them
    (the shared part of early stopping and learning-rate reduction)."""

    def __init__(self, monitor: str = "valid_loss", comp=None, min_delta: float = 0.0, patience: int = 1,
                 reset_on_fit: bool = True):
        super().__init__(monitor, comp, min_delta, reset_on_fit)
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
    """Stop training when ``monitor`` has not improved for ``patience`` epochs."""

    def before_fit(self):
        self.stopped_epoch = None
        super().before_fit()

    def on_plateau(self) -> None:
        self.stopped_epoch = self.learn.epoch
        raise CancelFitException()


class ReduceLROnPlateau(PatienceCallback):
    """Divide every learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs
    (never below ``min_lr``). Use it with `Learner.fit` (a schedule such as one-cycle would overwrite the rates)."""

    def __init__(self, monitor: str = "valid_loss", comp=None, min_delta: float = 0.0, patience: int = 1,
                 factor: float = 10.0, min_lr: float = 0.0, reset_on_fit: bool = True):
        if factor <= 1:
            raise ValueError(f"factor divides the learning rate and must be > 1, got {factor!r}")
        super().__init__(monitor, comp, min_delta, patience, reset_on_fit)
        self.factor, self.min_lr = factor, min_lr

    def on_plateau(self) -> None:
        self.wait = 0
        for pg in self.learn.opt.param_groups:
            pg["lr"] = max(pg["lr"] / self.factor, self.min_lr)
        print(f"Epoch {self.learn.epoch}: reducing lr to {self.learn.opt.param_groups[-1]['lr']:.3g}")


class SaveModelCallback(TrackerCallback):
    """Save the model when ``monitor`` improves (``fname``), or every epoch (``every_epoch=True``:
    ``fname_<epoch>``); at the end of training, load the best weights back (``at_end=False``)."""

    def __init__(self, monitor: str = "valid_loss", comp=None, min_delta: float = 0.0, fname: str = "model",
                 every_epoch: bool = False, at_end: bool = False, with_opt: bool = False, reset_on_fit: bool = True):
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.fname, self.every_epoch, self.at_end, self.with_opt = fname, every_epoch, at_end, with_opt
        self.best_epoch = None

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.best_epoch = state["best_epoch"]

    def after_epoch(self):
        if self.every_epoch:
            self.learn.save(f"{self.fname}_{self.learn.epoch}", with_opt=self.with_opt)
            return
        super().after_epoch()
        if self.new_best:
            self.best_epoch = self.learn.epoch
            self.learn.save(self.fname, with_opt=self.with_opt)

    def after_fit(self):
        if not self.every_epoch and not self.at_end and self.best_epoch is not None:
            self.learn.load(self.fname, with_opt=False)


class TerminateOnNaNCallback(Callback):
    """Stop training as soon as the training loss is NaN or infinite, before the bad loss is
    back-propagated into the weights."""

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
