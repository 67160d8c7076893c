"""Hyper-parameter schedules: `ParamScheduler`, `OneCycleScheduler` (the learning-rate finder is in `lr_finder`).

A schedule is a function of the training progress ``pct`` in ``[0, 1]`` (over the whole ``fit``) that
returns a value, or one value per parameter group. The position is computed from ``epoch`` and
``iter``, so a resumed run continues exactly where it stopped.

>>> f = combine_scheds([0.25, 0.75], [sched_cos(1, 10), sched_cos(10, 0)])
>>> [round(f(p), 3) for p in (0.0, 0.25, 1.0)]
[1.0, 10.0, 0.0]
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..callback import Callback
from ..optim import LR, n_splitter_groups, splitter_group_of, spread_lr
from ..validation import check_int, check_lr, check_one_cycle

__all__ = ["sched_cos", "sched_lin", "sched_exp", "sched_const", "combine_scheds", "ParamScheduler",
           "OneCycleScheduler", "flat_cos_scheduler", "sgdr_scheduler"]

Sched = Callable[[float], float]


def sched_cos(start: float, end: float) -> Sched:
    """Cosine from ``start`` to ``end``.

    >>> f = sched_cos(1e-3, 1e-5)
    >>> [round(f(pct), 6) for pct in (0.0, 0.5, 1.0)]
    [0.001, 0.000505, 1e-05]
    """
    return lambda pct: start + (1 + math.cos(math.pi * (1 - pct))) * (end - start) / 2


def sched_lin(start: float, end: float) -> Sched:
    """Linear from ``start`` to ``end``.

    >>> f = sched_lin(0.0, 1e-2)
    >>> [round(f(pct), 6) for pct in (0.0, 0.25, 1.0)]
    [0.0, 0.0025, 0.01]
    """
    return lambda pct: start + pct * (end - start)


def sched_exp(start: float, end: float) -> Sched:
    """Exponential from ``start`` to ``end``.

    >>> f = sched_exp(1e-6, 1e-2)  # equal ratios in equal steps, as lr_find grows the learning rate
    >>> [f"{f(pct):.0e}" for pct in (0.0, 0.25, 0.5, 1.0)]
    ['1e-06', '1e-05', '1e-04', '1e-02']
    """
    return lambda pct: start * (end / start) ** pct


def sched_const(value: float) -> Sched:
    """Constant ``value``.

    >>> f = combine_scheds([0.75, 0.25], [sched_const(1e-3), sched_cos(1e-3, 0.0)])  # flat, then anneal
    >>> [round(f(pct), 6) for pct in (0.0, 0.5, 0.875, 1.0)]
    [0.001, 0.001, 0.0005, 0.0]
    """
    return lambda pct: value


def combine_scheds(pcts: Sequence[float], scheds: Sequence[Sched]) -> Sched:
    """Run ``scheds[i]`` over the fraction ``pcts[i]`` of training (the fractions must sum to 1).

    >>> warmup_then_anneal = combine_scheds([0.3, 0.7], [sched_lin(1e-4, 1e-3), sched_cos(1e-3, 0.0)])
    >>> [round(warmup_then_anneal(pct), 5) for pct in (0.0, 0.15, 0.3, 0.65, 1.0)]
    [0.0001, 0.00055, 0.001, 0.0005, 0.0]
    >>> # learn.fit(5, cbs=ParamScheduler({"lr": warmup_then_anneal}))
    """
    if abs(sum(pcts) - 1) > 1e-6:
        raise ValueError(f"schedule fractions must sum to 1, got {list(pcts)}")
    bounds = np.cumsum([0.0] + list(pcts))

    def f(pct: float) -> float:
        i = int(np.searchsorted(bounds, pct, side="right")) - 1
        i = min(max(i, 0), len(scheds) - 1)
        width = bounds[i + 1] - bounds[i]
        return scheds[i](float((pct - bounds[i]) / width) if width > 0 else 1.0)  # a float, not numpy's

    return f


class ParamScheduler(Callback):
    """Set optimizer hyper-parameters before every training batch.

    ``scheds`` maps a name to a schedule, or to one schedule per parameter group of the splitter:
    ``'lr'``, ``'mom'`` (Adam's beta1 or SGD's momentum) or any key of the optimizer's param groups (e.g.
    ``'weight_decay'``, which leaves the undecayed groups of ``wd_bn_bias=False`` at 0).

    >>> import torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.fit(2, cbs=ParamScheduler({"lr": sched_lin(1e-3, 1e-2), "weight_decay": sched_const(0.1)}))
    >>> [round(lr, 4) for lr in learn.recorder.lrs]  # 4 training batches: pct 0, 1/3, 2/3, 1
    [0.001, 0.004, 0.007, 0.01]
    >>> learn.opt.param_groups[0]["weight_decay"]
    0.1
    """

    order = 10
    run_valid = False

    def __init__(self, scheds: dict[str, Sched | Sequence[Sched]]):
        self.scheds = scheds

    def _pct(self) -> float:
        learn = self.learn
        total = learn.n_epoch * learn.n_iter
        limit = getattr(learn, "step_limit", None)  # fit(..., max_steps=): the schedule spans those steps
        if limit is not None:
            total = limit.total_steps(learn.n_epoch, learn.n_iter)
        return min(1.0, (learn.epoch * learn.n_iter + learn.iter) / max(1, total - 1))

    def before_batch(self):
        pct = self._pct()
        opt = self.learn.opt
        for name, scheds in self.scheds.items():
            if callable(scheds):
                scheds = [scheds] * n_splitter_groups(opt)
            elif len(scheds) != n_splitter_groups(opt):
                raise ValueError(f"ParamScheduler got {len(scheds)} schedules for {name!r} but the splitter made "
                                 f"{n_splitter_groups(opt)} parameter groups: pass one schedule, or one per group")
            for pg, i in zip(opt.param_groups, splitter_group_of(opt)):
                _set_hyper(pg, name, scheds[i](pct))


def _set_hyper(pg: dict, name: str, v: float) -> None:
    if name == "weight_decay" and pg.get("no_wd", False):
        return  # wd_bn_bias=False: normalisation and bias parameters are never decayed
    if name == "mom":
        if "betas" in pg:
            pg["betas"] = (v, pg["betas"][1])
        elif pg.get("momentum", 0):
            pg["momentum"] = v
    else:
        pg[name] = v


class OneCycleScheduler(ParamScheduler):
    """The one-cycle policy (see `Learner.fit_one_cycle`).

    >>> import torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.fit(5, cbs=OneCycleScheduler(lr_max=1e-2, pct_start=0.25))  # what learn.fit_one_cycle(5, 1e-2) runs
    >>> lrs, moms = learn.recorder.lrs, learn.recorder.moms
    >>> f"{lrs[0]:.0e}", lrs.index(max(lrs)), f"{max(lrs):.0e}", f"{lrs[-1]:.0e}"  # up from lr_max/25, down to /1e5
    ('4e-04', 2, '1e-02', '1e-07')
    >>> round(moms[0], 2), round(min(moms), 2), round(moms[-1], 2)  # momentum moves the other way
    (0.95, 0.85, 0.95)
    """

    def __init__(self, lr_max: LR, div: float = 25.0, div_final: float = 1e5, pct_start: float = 0.25,
                 moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95)):
        check_lr(lr_max)
        check_one_cycle(div, div_final, pct_start, moms)
        self.lr_max, self.div, self.div_final, self.pct_start, self.moms = lr_max, div, div_final, pct_start, moms
        super().__init__({})

    def before_fit(self):
        lrs = spread_lr(self.lr_max, n_splitter_groups(self.learn.opt))
        p = [self.pct_start, 1 - self.pct_start]
        self.scheds = {"lr": [combine_scheds(p, [sched_cos(lr / self.div, lr), sched_cos(lr, lr / self.div_final)])
                              for lr in lrs]}
        if self.moms is not None:
            m0, m1, m2 = self.moms
            self.scheds["mom"] = combine_scheds(p, [sched_cos(m0, m1), sched_cos(m1, m2)])


def flat_cos_scheduler(lr: LR, n_groups: int, pct_start: float = 0.75, div_final: float = 1e5) -> ParamScheduler:
    """Flat at ``lr`` for ``pct_start`` of training, then cosine down to ``lr / div_final`` (`Learner.fit_flat_cos`).

    >>> sched = flat_cos_scheduler(1e-3, n_groups=1, pct_start=0.5)  # learn.fit(n, cbs=sched), or learn.fit_flat_cos
    >>> f = sched.scheds["lr"][0]
    >>> [f"{f(pct):.1e}" for pct in (0.0, 0.5, 0.75, 1.0)]
    ['1.0e-03', '1.0e-03', '5.0e-04', '1.0e-08']
    """
    check_one_cycle(pct_start=pct_start, div_final=div_final)
    lrs = spread_lr(lr, n_groups)
    p = [pct_start, 1 - pct_start]
    return ParamScheduler({"lr": [combine_scheds(p, [sched_const(v), sched_cos(v, v / div_final)]) for v in lrs]})


def sgdr_scheduler(lr_max: LR, n_groups: int, n_cycles: int, cycle_len: int, cycle_mult: int = 2) -> tuple[ParamScheduler, int]:
    """Cosine annealing with warm restarts (SGDR): cycle ``i`` lasts ``cycle_len * cycle_mult**i`` epochs and
    anneals from ``lr_max`` to 0. Returns the scheduler and the total number of epochs (`Learner.fit_sgdr`).

    >>> sched, n_epoch = sgdr_scheduler(1e-3, n_groups=1, n_cycles=2, cycle_len=1)  # cycles of 1, then 2 epochs
    >>> n_epoch  # learn.fit(n_epoch, cbs=sched), or learn.fit_sgdr(2, 1)
    3
    >>> f = sched.scheds["lr"][0]
    >>> [f"{f(pct):.1e}" for pct in (0.0, 1 / 6, 1 / 3, 1.0)]  # anneal, restart at the second cycle, anneal
    ['1.0e-03', '5.0e-04', '1.0e-03', '0.0e+00']
    """
    for name, v in (("n_cycles", n_cycles), ("cycle_len", cycle_len), ("cycle_mult", cycle_mult)):
        check_int(name, v, low=1)
    lengths = [cycle_len * cycle_mult ** i for i in range(n_cycles)]
    total = sum(lengths)
    pcts = [n / total for n in lengths]
    lrs = spread_lr(lr_max, n_groups)
    return ParamScheduler({"lr": [combine_scheds(pcts, [sched_cos(v, 0) for _ in lengths]) for v in lrs]}), total
