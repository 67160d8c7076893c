"""Parameter groups, freezing and discriminative learning rates.

A *splitter* maps a model to a list of parameter groups, body first and head last. ``lr=slice(lo, hi)``
spreads learning rates geometrically from ``lo`` (first group) to ``hi`` (last group);
``slice(hi)`` gives ``hi / 10`` to every group but the last.

>>> spread_lr(slice(1e-5, 1e-3), 3)
[1e-05, 0.0001, 0.001]
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .validation import check_lr, check_wd  # noqa: F401 - re-exported: the one check, in validation.py

__all__ = ["Adam", "trainable_params", "default_splitter", "spread_lr", "check_lr", "LR"]

LR = float | slice | Sequence[float]


def Adam(params: Any, lr: float = 1e-3, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5,
         wd: float = 0.01, decouple_wd: bool = True, fused: bool | None = None) -> torch.optim.Optimizer:
    """fastai's ``Adam`` on torch's implementation, for lessons that pass ``opt_func=Adam``.

    ``betas=(mom, sqr_mom)=(0.9, 0.99)``, ``eps=1e-5`` and decoupled weight decay 0.01 (``torch.optim.AdamW``;
    ``decouple_wd=False``: ``torch.optim.Adam``'s L2 penalty). The learners' default stays ``torch.optim.AdamW``
    with torch's own ``betas=(0.9, 0.999)``, ``eps=1e-8``: on fastbook ch. 12's ``LMModel1`` with
    ``fit_one_cycle(4, 1e-3)`` it reached accuracy 0.487 (3 runs) against 0.442 with these values (see
    ``benchmarks/RESULTS.md``). ``fused``: torch's fused kernel (``None``: torch's choice).

    >>> opt = Adam(torch.nn.Linear(2, 1).parameters(), lr=1e-2)  # Learner(..., opt_func=Adam) as in a fastai lesson
    >>> type(opt).__name__, opt.defaults["betas"], opt.defaults["eps"], opt.defaults["weight_decay"]
    ('AdamW', (0.9, 0.99), 1e-05, 0.01)
    """
    cls = torch.optim.AdamW if decouple_wd else torch.optim.Adam
    if fused is None:
        return cls(params, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd)
    return cls(params, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd, fused=fused)


def trainable_params(m: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``m`` that are not frozen (``requires_grad``).

    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    >>> _ = model[0].requires_grad_(False)  # frozen body
    >>> [tuple(p.shape) for p in trainable_params(model)]
    [(1, 3), (1,)]
    """
    return [p for p in m.parameters() if p.requires_grad]


def default_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """One group holding every parameter.

    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    >>> [len(group) for group in default_splitter(model)]  # one group: no freezing, one learning rate
    [4]
    >>> body_head = lambda m: [list(m[0].parameters()), list(m[1].parameters())]  # Learner(..., splitter=body_head)
    >>> [len(group) for group in body_head(model)]
    [2, 2]
    """
    return [list(model.parameters())]


def spread_lr(lr: LR, n_groups: int) -> list[float]:
    """The learning rate of each of ``n_groups`` groups for a float, a slice or a list.

    >>> spread_lr(slice(1e-3), 3)  # slice(hi): hi for the head, hi / 10 for the other groups
    [0.0001, 0.0001, 0.001]
    >>> spread_lr(1e-3, 2), spread_lr([1e-4, 1e-3], 2)
    ([0.001, 0.001], [0.0001, 0.001])
    """
    check_lr(lr)
    if isinstance(lr, slice):
        if lr.start is None:
            return [lr.stop / 10] * (n_groups - 1) + [lr.stop]
        if n_groups == 1:
            return [lr.stop]
        lo, hi = lr.start, lr.stop
        return [lo * (hi / lo) ** (i / (n_groups - 1)) for i in range(n_groups)]
    if isinstance(lr, (list, tuple)):
        if len(lr) != n_groups:
            raise ValueError(f"got {len(lr)} learning rates for {n_groups} parameter groups")
        return [float(v) for v in lr]
    return [float(lr)] * n_groups


def make_optimizer(opt_func: Callable, groups: list[list[nn.Parameter]], lr: LR, wd: float | None) -> torch.optim.Optimizer:
    """Build ``opt_func`` over the parameter groups, each with its own learning rate."""
    lrs = spread_lr(lr, len(groups))
    pgs = []
    for ps, l in zip(groups, lrs):
        pg = {"params": list(ps), "lr": l}
        if wd is not None:
            pg["weight_decay"] = wd
        pgs.append(pg)
    return opt_func(pgs, lr=lrs[-1])
