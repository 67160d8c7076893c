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
import sys
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "Metric", "AvgMetric", "TorchMetric", "whole_set", "accuracy", "error_rate", "accuracy_multi", "mse", "mae",
    "rmse", "msle", "top_k_accuracy", "exp_rmspe", "R2Score", "Perplexity", "BalancedAccuracy",
    "F1Score", "F1ScoreMulti", "Precision", "Recall", "RocAuc", "RocAucBinary", "as_metric",
]


class Metric:
    """Base class of accumulating metrics.

    >>> class MaxError(Metric):  # accumulate over the batches, report one number for the set
    ...     name, higher_is_better = "max_error", False
    ...     def reset(self): self.worst = 0.0
    ...     def accumulate(self, pred, targ): self.worst = max(self.worst, float((pred.flatten() - targ).abs().max()))
    ...     @property
    ...     def value(self): return self.worst
    >>> m = MaxError(); m.reset()  # Learner(..., metrics=MaxError()) calls these each validation
    >>> m.accumulate(torch.tensor([[1.0], [2.0]]), torch.tensor([1.0, 5.0]))
    >>> m.accumulate(torch.tensor([[0.0]]), torch.tensor([1.0]))
    >>> m.value
    3.0
    """

    name: str = "metric"
    higher_is_better: bool = True

    def reset(self) -> None:
        raise NotImplementedError

    def accumulate(self, pred: torch.Tensor, targ: torch.Tensor) -> None:
        raise NotImplementedError

    @property
    def value(self) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class AvgMetric(Metric):
    """Mean of ``func(pred, targ)`` over all items (each batch weighted by its size).

    >>> m = AvgMetric(lambda pred, targ: (pred == targ).float().mean(), name="exact")  # what metrics=f makes of f
    >>> m.accumulate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 0]))  # 2 of 4 right
    >>> m.accumulate(torch.tensor([5, 6]), torch.tensor([5, 6]))  # 2 of 2 right
    >>> m.name, round(m.value, 4)  # 4 of 6 over the set (not the mean of 0.5 and 1.0)
    ('exact', 0.6667)
    """

    def __init__(self, func: Callable, name: str | None = None, higher_is_better: bool | None = None):
        self.func = func
        inner = func.func if isinstance(func, functools.partial) else func  # partial(accuracy_multi, thresh=0.2)
        self.name = name or getattr(inner, "__name__", type(inner).__name__)
        self.higher_is_better = higher_is_better if higher_is_better is not None else \
            getattr(inner, "higher_is_better", True)
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def accumulate(self, pred, targ) -> None:
        n = targ.shape[0] if targ.ndim else 1
        v = self.func(pred, targ)
        v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
        self.total = self.total + v * n  # a tensor stays on the device: no sync per batch
        self.count += n

    @property
    def value(self) -> float:
        return float(self.total) / self.count if self.count else float("nan")


class TorchMetric(Metric):
    """A ``torchmetrics.Metric`` as a learnkit metric (what `as_metric` makes of one): ``reset()`` each
    validation, ``update(pred, targ)`` each batch, ``compute()`` at the end; named by its class name.

    Under DDP the learner gathers every validation batch's predictions on each rank already, so the
    metric's own synchronisation is turned off (it would count every item once per rank). Its states follow
    the predictions to their device.

    >>> class Mean(torch.nn.Module):  # the interface of a torchmetrics.Metric: reset, update, compute
    ...     def reset(self): self.total, self.n = 0.0, 0
    ...     def update(self, pred, targ): self.total, self.n = self.total + float(pred.sum()), self.n + pred.numel()
    ...     def compute(self): return torch.tensor(self.total / self.n)
    >>> m = TorchMetric(Mean()); m.reset()  # what as_metric makes of a torchmetrics.Metric in metrics=
    >>> m.accumulate(torch.tensor([1.0, 2.0]), torch.tensor([0, 0]))
    >>> m.accumulate(torch.tensor([6.0]), torch.tensor([0]))
    >>> m.name, m.value
    ('Mean', 3.0)
    """

    def __init__(self, metric: Any):
        self.metric = metric
        self.name = type(metric).__name__
        hib = getattr(metric, "higher_is_better", None)
        self.higher_is_better = True if hib is None else bool(hib)
        for sub in metric.modules():  # a compositional metric (m1 + m2) computes its parts'
            if hasattr(sub, "sync_on_compute"):
                sub.sync_on_compute, sub._to_sync = False, False

    def reset(self) -> None:
        self.metric.reset()

    def accumulate(self, pred: torch.Tensor, targ: torch.Tensor) -> None:
        if getattr(self.metric, "device", pred.device) != pred.device:
            self.metric.to(pred.device)
        self.metric.update(pred.detach(), targ.detach())

    @property
    def value(self) -> float:
        if not getattr(self.metric, "update_called", True):
            return float("nan")
        v = self.metric.compute()
        if isinstance(v, torch.Tensor) and v.numel() != 1:
            raise ValueError(f"torchmetrics {self.name}.compute() returned a tensor of shape {list(v.shape)}; a "
                             "learnkit metric is one number per epoch: use an averaged version (e.g. average='macro')")
        return float(v)


def _is_torchmetric(m: Any) -> bool:
    tm = sys.modules.get("torchmetrics")  # an instance implies the package is imported: never import it here
    return tm is not None and isinstance(m, tm.Metric)


def as_metric(m: Metric | Callable | Any) -> Metric:
    """A `Metric` from a metric, a ``torchmetrics.Metric`` instance (`TorchMetric`), or a function
    (`AvgMetric`, or its `whole_set` accumulator; a ``functools.partial`` passes its keywords on).

    >>> as_metric(error_rate).name, as_metric(rmse).name, as_metric(functools.partial(accuracy_multi, thresh=0.2)).name
    ('error_rate', 'rmse', 'accuracy_multi')
    """
    if isinstance(m, Metric):
        return m
    if _is_torchmetric(m):
        return TorchMetric(m)
    if isinstance(m, type):
        raise TypeError(f"metric {m.__name__} is a class: pass an instance, e.g. metrics={m.__name__}()")
    if not callable(m):
        raise TypeError(f"metrics must be Metric instances or functions (pred, targ) -> value (or torchmetrics.Metric "
                        f"instances), got {m!r}")
    inner, options = m, {}
    if isinstance(m, functools.partial) and not m.args:
        inner, options = m.func, dict(m.keywords)
    make = getattr(inner, "make_metric", None)  # a whole_set function: one accumulator per Learner
    if make is not None:
        return make(**options)
    return AvgMetric(m)


def whole_set(accumulator: Callable[..., Metric]) -> Callable[[Callable], Callable]:
    """Decorator of a function metric that is not a mean of per-item values (RMSE, a pixel accuracy): as
    ``metrics=f`` (or ``partial(f, **options)``, or ``f(**options)``) the learner accumulates it over the
    whole set with ``accumulator(**options)``; called on tensors, it is the value on those tensors.

    >>> class Total(AvgMetric):
    ...     def __init__(self): super().__init__(lambda p, t: p.sum(), name="total")
    >>> @whole_set(Total)
    ... def total(pred, targ):
    ...     return pred.sum()
    >>> float(total(torch.ones(3), None)), as_metric(total).name, type(total()).__name__
    (3.0, 'total', 'Total')
    """
    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def metric(pred: torch.Tensor | None = None, targ: torch.Tensor | None = None, *args: Any,
                   **options: Any) -> Any:
            if pred is None and targ is None and not args:
                return accumulator(**options)
            return f(pred, targ, *args, **options)
        metric.make_metric = accumulator  # type: ignore[attr-defined]
        return metric
    return deco


def _lower_is_better(f):
    f.higher_is_better = False
    return f


# --- classification ---------------------------------------------------------------------------------
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


from .classmetrics import (BalancedAccuracy, F1Score, F1ScoreMulti, Precision, Recall, RocAuc,  # noqa: E402
                           RocAucBinary)
