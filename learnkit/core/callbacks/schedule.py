"""Hyper-parameter schedules: `ParamScheduler`, `OneCycleScheduler`, and the learning-rate finder `LRFinder`.

A schedule is a function of the training progress ``pct`` in ``[0, 1]`` (over the whole ``fit``) that
returns a value, or one value per parameter group. The position is computed from ``epoch`` and
``iter``, so a resumed run continues exactly where it stopped.

>>> f = combine_scheds([0.25, 0.75], [sched_cos(1, 10), sched_cos(10, 0)])
>>> [round(f(p), 3) for p in (0.0, 0.25, 1.0)]
[1.0, 10.0, 0.0]
"""
from __future__ import annotations

import copy
import math
from collections import namedtuple
from collections.abc import Callable, Sequence

import numpy as np

from ..callback import Callback, CancelFitException, CancelValidException
from ..optim import LR, spread_lr
from ..process_group import any_rank

__all__ = ["sched_cos", "sched_lin", "sched_exp", "combine_scheds", "ParamScheduler", "OneCycleScheduler",
           "LRFinder", "SuggestedLRs"]

Sched = Callable[[float], float]


def sched_cos(start: float, end: float) -> Sched:
    """Cosine from ``start`` to ``end``."""
    return lambda pct: start + (1 + math.cos(math.pi * (1 - pct))) * (end - start) / 2


def sched_lin(start: float, end: float) -> Sched:
    """Linear from ``start`` to ``end``."""
    return lambda pct: start + pct * (end - start)


def sched_exp(start: float, end: float) -> Sched:
    """Exponential from ``start`` to ``end``."""
    return lambda pct: start * (end / start) ** pct


def combine_scheds(pcts: Sequence[float], scheds: Sequence[Sched]) -> Sched:
    """Run ``scheds[i]`` over the fraction ``pcts[i]`` of training (the fractions must sum to 1)."""
    if abs(sum(pcts) - 1) > 1e-6:
        raise ValueError(f"schedule fractions must sum to 1, got {list(pcts)}")
    bounds = np.cumsum([0.0] + list(pcts))

    def f(pct: float) -> float:
        i = int(np.searchsorted(bounds, pct, side="right")) - 1
        i = min(max(i, 0), len(scheds) - 1)
        width = bounds[i + 1] - bounds[i]
        return scheds[i]((pct - bounds[i]) / width if width > 0 else 1.0)

    return f


class ParamScheduler(Callback):
    """Set optimizer hyper-parameters before every training batch.

    ``scheds`` maps a name to one schedule per parameter group: ``'lr'``, ``'mom'`` (Adam's beta1 or
    SGD's momentum) or any key of the optimizer's param groups (e.g. ``'weight_decay'``).
    """

    order = 10
    run_valid = False

    def __init__(self, scheds: dict[str, Sched | Sequence[Sched]]):
        self.scheds = scheds

    def _pct(self) -> float:
        learn = self.learn
        total = learn.n_epoch * learn.n_iter
        return min(1.0, (learn.epoch * learn.n_iter + learn.iter) / max(1, total - 1))

    def before_batch(self):
        pct = self._pct()
        for name, scheds in self.scheds.items():
            groups = self.learn.opt.param_groups
            if callable(scheds):
                scheds = [scheds] * len(groups)
            for pg, f in zip(groups, scheds):
                _set_hyper(pg, name, f(pct))


def _set_hyper(pg: dict, name: str, v: float) -> None:
    if name == "mom":
        if "betas" in pg:
            pg["betas"] = (v, pg["betas"][1])
        elif pg.get("momentum", 0):
            pg["momentum"] = v
    else:
        pg[name] = v


class OneCycleScheduler(ParamScheduler):
    """The one-cycle policy (see `Learner.fit_one_cycle`)."""

    def __init__(self, lr_max: LR, div: float = 25.0, div_final: float = 1e5, pct_start: float = 0.25,
                 moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95)):
        if not 0 <= pct_start <= 1:
            raise ValueError(f"pct_start must be in [0, 1], got {pct_start}")
        self.lr_max, self.div, self.div_final, self.pct_start, self.moms = lr_max, div, div_final, pct_start, moms
        super().__init__({})

    def before_fit(self):
        n_groups = len(self.learn.opt.param_groups)
        lrs = spread_lr(self.lr_max, n_groups)
        p = [self.pct_start, 1 - self.pct_start]
        self.scheds = {"lr": [combine_scheds(p, [sched_cos(lr / self.div, lr), sched_cos(lr, lr / self.div_final)])
                              for lr in lrs]}
        if self.moms is not None:
            m0, m1, m2 = self.moms
            self.scheds["mom"] = combine_scheds(p, [sched_cos(m0, m1), sched_cos(m1, m2)])


SuggestedLRs = namedtuple("SuggestedLRs", ["valley", "minimum", "steep"])


class LRFinder(Callback):
    """Grow the learning rate exponentially from ``start_lr`` to ``end_lr`` over ``num_it`` batches,
    stop when the loss diverges, and restore the model and optimizer afterwards."""

    order = 55
    run_valid = False

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True):
        if not 0 < start_lr < end_lr:
            raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div

    def before_fit(self):
        self.model_state = copy.deepcopy(self.learn.model.state_dict())
        self.opt_state = copy.deepcopy(self.learn.opt.state_dict())
        self.scaler_state = copy.deepcopy(self.learn.scaler.state_dict())  # fp16: the loss scale it grows/cuts
        self.was_training = self.learn.model.training
        self.best, self.count = float("inf"), 0
        self.restored = False

    def before_batch(self):
        lr = self.start_lr * (self.end_lr / self.start_lr) ** (self.count / max(1, self.num_it - 1))
        for pg in self.learn.opt.param_groups:
            pg["lr"] = lr

    def after_batch(self):
        self.count += 1
        loss = self.learn.recorder.smooth_loss
        if math.isfinite(loss) and loss < self.best:
            self.best = loss
        stop = self.count >= self.num_it or (self.stop_div and (not math.isfinite(loss) or loss > 4 * self.best))
        if getattr(self.learn, "distributed_trainer", None) is not None:
            stop = any_rank(stop)  # every rank stops at the same batch (each sees its own loss)
        if stop:
            raise CancelFitException()

    def before_validate(self):
        raise CancelValidException()

    def after_fit(self):
        if getattr(self.learn, "distributed_trainer", None) is not None:
            self.learn.recorder.mean_losses_over_ranks()  # the same curve, so the same suggestions, on every rank
        self.restore()

    def restore(self) -> None:
        """Put back the weights, the optimizer (learning rates included), the gradient scaler and the
        train/eval mode as they were before ``lr_find``. Idempotent; `Learner.lr_find` also calls it in a
        ``finally`` so that an interrupted search (Ctrl-C) restores them too."""
        if getattr(self, "restored", True):
            return
        self.restored = True
        self.learn.opt.zero_grad(set_to_none=True)
        self.learn.model.load_state_dict(self.model_state)
        self.learn.opt.load_state_dict(self.opt_state)
        if self.scaler_state:  # a disabled scaler has no state
            self.learn.scaler.load_state_dict(self.scaler_state)
        self.learn.model.train(self.was_training)

    def suggest(self, funcs: Sequence[str] = ("valley",)) -> SuggestedLRs:
        """Suggested learning rates from the recorded curve: ``valley`` (two thirds down the longest
        descending stretch), ``minimum`` (a tenth of the lr at the lowest loss) and ``steep`` (steepest descent)."""
        lrs = np.array(self.learn.recorder.lrs, dtype=float)
        losses = np.array(self.learn.recorder.smooth_losses, dtype=float)
        keep = np.isfinite(losses)
        lrs, losses = lrs[keep], losses[keep]
        if len(lrs) < 3:
            raise RuntimeError("lr_find recorded fewer than 3 batches: the training set is too small or the loss "
                               "diverged at once; lower start_lr or add data")
        out = {"valley": None, "minimum": None, "steep": None}
        if "minimum" in funcs:
            out["minimum"] = float(lrs[int(np.argmin(losses))] / 10)
        if "steep" in funcs:
            grads = np.gradient(losses, np.log(lrs))
            out["steep"] = float(lrs[int(np.argmin(grads))])
        if "valley" in funcs:
            out["valley"] = float(lrs[_valley_index(losses)])
        return SuggestedLRs(**out)


def _valley_index(losses: np.ndarray) -> int:
    """Index two thirds along the longest decreasing subsequence of the losses."""
    n = len(losses)
    length, prev = [1] * n, [-1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and length[j] + 1 > length[i]:
                length[i], prev[i] = length[j] + 1, j
    end = int(np.argmax(length))
    start = end
    while prev[start] != -1:
        start = prev[start]
    return start + (end - start) * 2 // 3
