"""Parameter groups, freezing, discriminative learning rates and weight decay.

A *splitter* maps a model to a list of parameter groups, body first and head last. ``lr=slice(lo, hi)``
spreads learning rates geometrically from ``lo`` (first group) to ``hi`` (last group);
``slice(hi)`` gives ``hi / 10`` to every group but the last. `make_optimizer` builds one optimizer param
group per splitter group, in order, and puts the parameters that are not to be decayed (normalisation layers
and biases, `norm_bias_params`, unless ``Learner(..., wd_bn_bias=True)``) in extra param groups after them.

>>> spread_lr(slice(1e-5, 1e-3), 3)
[1e-05, 0.0001, 0.001]
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch
from torch import nn

from .validation import check_lr, check_wd  # noqa: F401 - re-exported: the one check, in validation.py

__all__ = ["Adam", "SGD", "trainable_params", "default_splitter", "spread_lr", "check_lr", "LR", "norm_bias_params",
           "make_optimizer", "splitter_group_of", "n_splitter_groups", "head_param_group"]

LR = float | slice | Sequence[float]

#: normalisation layers: ``wd_bn_bias=False`` decays none of their parameters (batch/instance norm, layer, group, RMS)
NORM_LAYERS: tuple[type[nn.Module], ...] = ((nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
                                             + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def Adam(params: Any, lr: float = 1e-3, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5,
         wd: float = 0.01, decouple_wd: bool = True, fused: bool | None = None) -> torch.optim.Optimizer:
    """fastai's ``Adam`` on torch's implementation: the default ``opt_func`` of `Learner` and the vision, text
    and segmentation learners (`tabular_learner`: the same values in torch's fused kernel; `collab_learner`:
    ``torch.optim.AdamW`` with torch's own values).

    ``betas=(mom, sqr_mom)=(0.9, 0.99)``, ``eps=1e-5`` and decoupled weight decay 0.01 (``torch.optim.AdamW``;
    ``decouple_wd=False``: ``torch.optim.Adam``'s L2 penalty). On fastbook ch. 12's ``LMModel1`` with
    ``fit_one_cycle(4, 1e-3)`` a plain `Learner` with it matches fastai seed for seed (``benchmarks/RESULTS.md``,
    "Custom model on a plain Learner vs fastai"). ``fused``: torch's fused kernel (``None``: torch's choice).

    >>> opt = Adam(torch.nn.Linear(2, 1).parameters(), lr=1e-2)  # Learner(..., opt_func=Adam) as in a fastai lesson
    >>> type(opt).__name__, opt.defaults["betas"], opt.defaults["eps"], opt.defaults["weight_decay"]
    ('AdamW', (0.9, 0.99), 1e-05, 0.01)
    """
    cls = torch.optim.AdamW if decouple_wd else torch.optim.Adam
    if fused is None:
        return cls(params, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd)
    return cls(params, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd, fused=fused)


def SGD(params: Any, lr: float = 1e-3, mom: float = 0.0, wd: float = 0.0) -> torch.optim.Optimizer:
    """fastai's ``SGD`` on ``torch.optim.SGD``: momentum ``mom``, weight decay ``wd`` (fastbook ch. 4's
    ``Learner(dls, nn.Linear(28*28, 1), opt_func=SGD, ...)``). ``wd`` is torch's, added to the gradient: the same
    as fastai's decoupled decay without momentum, and seen through the momentum with it.

    >>> opt = SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    >>> type(opt).__name__, opt.defaults["momentum"], opt.defaults["weight_decay"]
    ('SGD', 0.0, 0.0)
    """
    return torch.optim.SGD(params, lr=lr, momentum=mom, weight_decay=wd)


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


def norm_bias_params(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter of a normalisation layer (`NORM_LAYERS`) and every bias (a parameter whose name starts
    with ``bias``: ``Linear.bias``, ``LSTM.bias_ih_l0``...): what ``Learner(..., wd_bn_bias=False)`` (the
    default, as in fastai) leaves out of weight decay.

    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 1, bias=False))
    >>> [tuple(p.shape) for p in norm_bias_params(model)]  # the first Linear's bias, BatchNorm's weight and bias
    [(3,), (3,), (3,)]
    """
    found: dict[int, nn.Parameter] = {}
    for m in model.modules():
        norm = isinstance(m, NORM_LAYERS)
        for name, p in m.named_parameters(recurse=False):
            if norm or name.startswith("bias"):
                found.setdefault(id(p), p)
    return list(found.values())


def make_optimizer(opt_func: Callable, groups: list[list[nn.Parameter]], lr: LR, wd: float | None,
                   no_decay: Collection[nn.Parameter] = ()) -> torch.optim.Optimizer:
    """Build ``opt_func`` over the splitter's ``groups``, each with its own learning rate (`spread_lr`).

    The optimizer's first ``len(groups)`` param groups are the splitter's groups, in order, so
    ``opt.param_groups[i]`` is still group ``i``'s; ``wd`` (``None``: the optimizer's default) is their weight
    decay. The parameters in ``no_decay`` move to extra param groups after them (one per splitter group that
    has some), with ``weight_decay=0`` and ``no_wd=True``. Every param group's ``splitter_group`` is the index of
    the splitter group it came from: learning-rate changes and schedules go by it (`splitter_group_of`).

    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    >>> groups = [list(model[0].parameters()), list(model[1].parameters())]  # body, head
    >>> opt = make_optimizer(Adam, groups, slice(1e-4, 1e-2), wd=None, no_decay=norm_bias_params(model))
    >>> [(pg["splitter_group"], pg["lr"], pg["weight_decay"], len(pg["params"])) for pg in opt.param_groups]
    [(0, 0.0001, 0.01, 1), (1, 0.01, 0.01, 1), (0, 0.0001, 0.0, 1), (1, 0.01, 0.0, 1)]
    """
    lrs = spread_lr(lr, len(groups))
    skip = {id(p) for p in no_decay}
    pgs, extra = [], []
    for i, (ps, group_lr) in enumerate(zip(groups, lrs)):
        ps = list(ps)
        pg = {"params": [p for p in ps if id(p) not in skip], "lr": group_lr, "splitter_group": i}
        if wd is not None:
            pg["weight_decay"] = wd
        pgs.append(pg)
        undecayed = [p for p in ps if id(p) in skip]
        if undecayed:
            extra.append({"params": undecayed, "lr": group_lr, "weight_decay": 0.0, "no_wd": True, "splitter_group": i})
    return opt_func(pgs + extra, lr=lrs[-1])


def splitter_group_of(opt: torch.optim.Optimizer) -> list[int]:
    """The splitter group each of ``opt``'s param groups came from (`make_optimizer`; an optimizer built
    elsewhere: one param group per splitter group).

    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    >>> opt = make_optimizer(Adam, [list(model[0].parameters()), list(model[1].parameters())], 1e-3, wd=None,
    ...                      no_decay=norm_bias_params(model))
    >>> splitter_group_of(opt), n_splitter_groups(opt)  # the weights of body and head, then their biases
    ([0, 1, 0, 1], 2)
    """
    return [int(pg.get("splitter_group", i)) for i, pg in enumerate(opt.param_groups)]


def n_splitter_groups(opt: torch.optim.Optimizer) -> int:
    """How many splitter groups ``opt``'s param groups came from (see `splitter_group_of`)."""
    return max(splitter_group_of(opt), default=-1) + 1


def head_param_group(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The param group of the splitter's last group (the head): the learning rate and momentum that the
    recorder logs (`make_optimizer` puts the splitter's groups first)."""
    return opt.param_groups[n_splitter_groups(opt) - 1]
