"""Metrics that are exact over a whole set, whatever the batch sizes.

Two ways to give a metric, as in fastai:

- a **function** ``f(pred, targ) -> tensor`` (lower-case: `accuracy`, `error_rate`, `rmse`, `foreground_acc`...):
  ``metrics=accuracy``; options with ``functools.partial(accuracy_multi, thresh=0.2)``. A per-item mean is
  averaged over the set, each batch weighted by its size (`AvgMetric`); a function that does not decompose into
  a mean (`rmse`, `exp_rmspe`, `foreground_acc`) is declared with `whole_set`, and the learner accumulates it
  over the whole set;
- a **class** (CamelCase: `F1Score`, `Precision`, `RocAuc`, `R2Score`, `DiceMulti`...): pass an instance,
  ``metrics=F1Score(average="macro")``. Every class is a `Metric`: ``reset()``, ``accumulate(pred, targ)``
  once per batch, then ``value``. A ``torchmetrics.Metric`` instance works too (``update``/``compute``; see
  `TorchMetric`).

``pred`` is the raw model output (logits for classification); ``targ`` the target tensor.

>>> m = as_metric(accuracy); m.reset()
>>> m.accumulate(torch.tensor([[0., 1.], [1., 0.]]), torch.tensor([1, 1]))
>>> m.accumulate(torch.tensor([[0., 1.]]), torch.tensor([1]))
>>> round(m.value, 4)
0.6667
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from .classmetrics import BalancedAccuracy, F1Score, F1ScoreMulti, Precision, Recall, RocAuc, RocAucBinary
from .metricbase import AvgMetric, Metric, TorchMetric, as_metric, whole_set

__all__ = [
    "Metric", "AvgMetric", "TorchMetric", "whole_set", "accuracy", "error_rate", "accuracy_multi", "mse", "mae",
    "rmse", "msle", "top_k_accuracy", "exp_rmspe", "R2Score", "Perplexity", "BalancedAccuracy",
    "F1Score", "F1ScoreMulti", "Precision", "Recall", "RocAuc", "RocAucBinary", "as_metric",
]


def _lower_is_better(f):
    f.higher_is_better = False
    return f


# --- classification ---------------------------------------------------------------------------------
def _class_axis(pred: torch.Tensor, targ: torch.Tensor, axis: int = 1) -> int:
    """``axis``, or the last one when the scores come last and ``axis`` does not fit the targets (a language
    model's ``[B, L, V]`` scores for ``[B, L]`` tokens, as fastai's ``axis=-1``).

    >>> _class_axis(torch.zeros(2, 5, 30), torch.zeros(2, 5)), _class_axis(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4))
    (2, 1)
    """
    if axis == 1 and pred.ndim == targ.ndim + 1 and pred.ndim > 2 and pred.shape[:-1] == targ.shape \
            and pred.shape[:1] + pred.shape[2:] != targ.shape:
        return pred.ndim - 1
    return axis


def _check_class_scores(pred: torch.Tensor, targ: torch.Tensor, name: str, axis: int = 1) -> None:
    """Clear errors when a classification metric gets a regression problem."""
    if targ.is_floating_point():
        raise ValueError(f"{name} compares class indices, but the targets are floats ({targ.dtype}): for a "
                         "regression task use mse, mae or rmse; for multi-label targets use accuracy_multi")
    if pred.ndim <= axis or pred.shape[axis] < 2:
        raise ValueError(f"{name} needs one score per class (predictions of shape [batch, n_classes, ...]), got "
                         f"{list(pred.shape)}: a regression or single-logit output? use mse/rmse or accuracy_multi")


def accuracy(pred: torch.Tensor, targ: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """Share of items whose arg-max class equals the target (works for ``[B, C]`` and ``[B, C, H, W]``).

    >>> pred = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])  # scores of 2 classes for 3 items
    >>> round(float(accuracy(pred, torch.tensor([0, 1, 1]))), 4)  # Learner(..., metrics=accuracy)
    0.6667
    """
    axis = _class_axis(pred, targ, axis)
    _check_class_scores(pred, targ, "accuracy", axis)
    return (pred.argmax(dim=axis) == targ).float().mean()


@_lower_is_better
def error_rate(pred: torch.Tensor, targ: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """1 - accuracy.

    >>> pred = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])  # scores of 2 classes for 3 items
    >>> round(float(error_rate(pred, torch.tensor([0, 1, 1]))), 4)  # Learner(..., metrics=error_rate)
    0.3333
    """
    _check_class_scores(pred, targ, "error_rate", axis)
    return 1 - accuracy(pred, targ, axis)


def top_k_accuracy(pred: torch.Tensor, targ: torch.Tensor, k: int = 5, axis: int = 1) -> torch.Tensor:
    """Share of items whose target is among the ``k`` highest-scoring classes.

    >>> float(top_k_accuracy(torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.1, 0.1]]), torch.tensor([2, 2]), k=2))
    0.5
    """
    _check_class_scores(pred, targ, "top_k_accuracy", axis)
    k = min(k, pred.shape[axis])
    top = pred.topk(k, dim=axis).indices
    return (top == targ.unsqueeze(axis)).any(dim=axis).float().mean()


def accuracy_multi(pred: torch.Tensor, targ: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True) -> torch.Tensor:
    """Multi-label accuracy: share of (item, label) pairs predicted right at ``thresh``.

    >>> pred = torch.tensor([[2.0, -2.0], [2.0, 2.0]])  # logits of 2 labels for 2 items
    >>> targ = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> float(accuracy_multi(pred, targ))  # 3 of the 4 (item, label) pairs right
    0.75
    >>> float(accuracy_multi(pred, targ, thresh=0.9))  # as a metric: metrics=partial(accuracy_multi, thresh=0.9)
    0.5
    """
    if sigmoid:
        pred = pred.sigmoid()
    return ((pred > thresh) == targ.bool()).float().mean()


# --- regression -------------------------------------------------------------------------------------
def _check_one_per_target(pred: torch.Tensor, targ: torch.Tensor, name: str) -> None:
    if pred.numel() != targ.numel():
        raise ValueError(f"{name} needs one prediction per target, got predictions of shape {list(pred.shape)} for "
                         f"targets of shape {list(targ.shape)}: a classification output? use accuracy or error_rate")


@_lower_is_better
def mse(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean squared error.

    >>> float(mse(torch.tensor([[1.0], [3.0]]), torch.tensor([1.0, 1.0])))  # [B, 1] outputs, [B] targets
    2.0
    """
    _check_one_per_target(pred, targ, "mse")
    return ((pred.reshape(targ.shape).float() - targ.float()) ** 2).mean()


@_lower_is_better
def mae(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean absolute error.

    >>> float(mae(torch.tensor([[1.0], [3.0]]), torch.tensor([1.0, 1.0])))
    1.0
    """
    _check_one_per_target(pred, targ, "mae")
    return (pred.reshape(targ.shape).float() - targ.float()).abs().mean()


@_lower_is_better
def msle(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean squared logarithmic error.

    >>> round(float(msle(torch.tensor([0.0, 3.0]), torch.tensor([0.0, 1.0]))), 4)  # mean of (log(1+p) - log(1+t))**2
    0.2402
    """
    _check_one_per_target(pred, targ, "msle")
    return ((torch.log1p(pred.reshape(targ.shape).float()) - torch.log1p(targ.float())) ** 2).mean()


def _squared_error(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    return (pred.reshape(targ.shape).float() - targ.float()) ** 2


def _squared_pct_error(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    p, t = torch.exp(pred.reshape(targ.shape).float()), torch.exp(targ.float())
    return ((t - p) / t) ** 2


class _RootMeanSquare(Metric):
    """``sqrt`` of the mean of ``squares(pred, targ)`` over every item of the set (what `rmse` and `exp_rmspe`
    accumulate; the sum stays on the device, read once in ``value``)."""

    higher_is_better = False

    def __init__(self, name: str, squares: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.name, self.squares = name, squares
        self.reset()

    def reset(self):
        self.sq, self.count = 0.0, 0

    def accumulate(self, pred, targ):
        _check_one_per_target(pred, targ, self.name)
        self.sq = self.sq + self.squares(pred, targ).sum().detach()
        self.count += targ.numel()

    @property
    def value(self):
        return math.sqrt(float(self.sq) / self.count) if self.count else float("nan")


@whole_set(functools.partial(_RootMeanSquare, "rmse", _squared_error))
def rmse(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Root mean squared error. As ``metrics=rmse`` it is computed over the whole validation set (not as a mean
    of batch RMSEs).

    >>> float(rmse(torch.tensor([1., 3.]), torch.tensor([1., 1.])))
    1.4142135381698608
    """
    _check_one_per_target(pred, targ, "rmse")
    return _squared_error(pred, targ).mean().sqrt()


@whole_set(functools.partial(_RootMeanSquare, "exp_rmspe", _squared_pct_error))
def exp_rmspe(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Root mean squared percentage error of ``exp(pred)`` against ``exp(targ)`` (targets in log space, as in
    the Rossmann competition); over the whole set as ``metrics=exp_rmspe``.

    >>> round(float(exp_rmspe(torch.tensor([0.0]), torch.tensor([0.0]))), 6)
    0.0
    """
    _check_one_per_target(pred, targ, "exp_rmspe")
    return _squared_pct_error(pred, targ).mean().sqrt()


class R2Score(Metric):
    """Coefficient of determination (scikit-learn's ``r2_score``) over the whole set.

    >>> m = R2Score(); m.accumulate(torch.tensor([1., 2., 3.]), torch.tensor([1., 2., 3.])); m.value
    1.0
    """
    name = "r2_score"

    def __init__(self):
        self.reset()

    def reset(self):
        self.preds, self.targs = [], []

    def accumulate(self, pred, targ):
        _check_one_per_target(pred, targ, "R2Score")
        self.preds.append(pred.detach().reshape(targ.shape).float().cpu())
        self.targs.append(targ.detach().float().cpu())

    @property
    def value(self):
        if not self.preds:
            return float("nan")
        from sklearn.metrics import r2_score
        return float(r2_score(torch.cat(self.targs).numpy(), torch.cat(self.preds).numpy()))


class Perplexity(Metric):
    """``exp`` of the mean cross-entropy per token, for language models: ``pred [B, ..., V]`` scores with the
    vocabulary last, or ``[B, V]``; ``targ`` the token indices.

    >>> m = Perplexity(); m.accumulate(torch.zeros(2, 4), torch.tensor([0, 3])); round(m.value, 4)
    4.0
    """
    name, higher_is_better = "perplexity", False

    def __init__(self):
        self.reset()

    def reset(self):
        self.total, self.count = 0.0, 0

    def accumulate(self, pred, targ):
        logits = pred.detach().float().reshape(-1, pred.shape[-1])
        self.total += float(torch.nn.functional.cross_entropy(logits, targ.reshape(-1), reduction="sum"))
        self.count += targ.numel()

    @property
    def value(self):
        return math.exp(self.total / self.count) if self.count else float("nan")

