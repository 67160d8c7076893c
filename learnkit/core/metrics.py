"""Metrics that are exact over a whole set, whatever the batch sizes.

Every metric is a `Metric`: ``reset()``, ``accumulate(pred, targ)`` once per batch, then ``value``.
Plain functions ``f(pred, targ) -> tensor`` become an `AvgMetric` (a mean weighted by batch size, exact
for per-item means such as accuracy or MSE). Metrics that do not decompose over batches (RMSE, F1,
AUC; Dice and IoU in `learnkit.core.segmetrics`) accumulate sums or predictions and compute once at the end.

``pred`` is the raw model output (logits for classification); ``targ`` the target tensor.

>>> import torch
>>> m = AvgMetric(accuracy); m.reset()
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

__all__ = [
    "Metric", "AvgMetric", "accuracy", "error_rate", "accuracy_multi", "mse", "mae", "rmse", "msle",
    "top_k_accuracy", "exp_rmspe", "R2Score", "Perplexity", "BalancedAccuracy",
    "F1Score", "F1ScoreMulti", "Precision", "Recall", "RocAuc", "RocAucBinary", "as_metric",
]


class Metric:
    """Base class of accumulating metrics."""

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
    """Mean of ``func(pred, targ)`` over all items (each batch weighted by its size)."""

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


def as_metric(m: Metric | Callable) -> Metric:
    """A `Metric` from a metric or a plain function (wrapped in `AvgMetric`)."""
    if isinstance(m, Metric):
        return m
    if isinstance(m, type) and issubclass(m, Metric):
        raise TypeError(f"metric {m.__name__} is a class: pass an instance, e.g. metrics={m.__name__}()")
    if not callable(m):
        raise TypeError(f"metrics must be Metric instances or functions (pred, targ) -> value, got {m!r}")
    make = getattr(m, "make_metric", None)  # e.g. rmse: computed over the whole set, one accumulator per Learner
    if make is not None:
        return make()
    return AvgMetric(m)


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
    """Share of items whose arg-max class equals the target (works for ``[B, C]`` and ``[B, C, H, W]``)."""
    _check_class_scores(pred, targ, "accuracy", axis)
    return (pred.argmax(dim=axis) == targ).float().mean()


@_lower_is_better
def error_rate(pred: torch.Tensor, targ: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """1 - accuracy."""
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
    """Multi-label accuracy: share of (item, label) pairs predicted right at ``thresh``."""
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
    """Mean squared error."""
    _check_one_per_target(pred, targ, "mse")
    return ((pred.reshape(targ.shape).float() - targ.float()) ** 2).mean()


@_lower_is_better
def mae(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    _check_one_per_target(pred, targ, "mae")
    return (pred.reshape(targ.shape).float() - targ.float()).abs().mean()


@_lower_is_better
def msle(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean squared logarithmic error."""
    _check_one_per_target(pred, targ, "msle")
    return ((torch.log1p(pred.reshape(targ.shape).float()) - torch.log1p(targ.float())) ** 2).mean()


class _RMSE(Metric):
    """Accumulates squared errors so that `rmse` is computed over the whole set."""
    name, higher_is_better = "rmse", False

    def reset(self):
        self.sq, self.count = 0.0, 0

    def accumulate(self, pred, targ):
        _check_one_per_target(pred, targ, "rmse")
        self.sq = self.sq + ((pred.reshape(targ.shape).float() - targ.float()) ** 2).sum().detach()
        self.count += targ.numel()

    @property
    def value(self):
        return math.sqrt(float(self.sq) / self.count) if self.count else float("nan")


def rmse(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Root mean squared error. As ``metrics=rmse`` it is computed over the whole validation set (not as a mean
    of batch RMSEs).

    >>> float(rmse(torch.tensor([1., 3.]), torch.tensor([1., 1.])))
    1.4142135381698608
    """
    _check_one_per_target(pred, targ, "rmse")
    return ((pred.reshape(targ.shape).float() - targ.float()) ** 2).mean().sqrt()


rmse.make_metric = _RMSE  # type: ignore[attr-defined]


class _ExpRMSPE(Metric):
    name, higher_is_better = "exp_rmspe", False

    def reset(self):
        self.sq, self.count = 0.0, 0

    def accumulate(self, pred, targ):
        _check_one_per_target(pred, targ, "exp_rmspe")
        p, t = torch.exp(pred.reshape(targ.shape).float()), torch.exp(targ.float())
        self.sq += float((((t - p) / t) ** 2).sum())
        self.count += targ.numel()

    @property
    def value(self):
        return math.sqrt(self.sq / self.count) if self.count else float("nan")


def exp_rmspe(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Root mean squared percentage error of ``exp(pred)`` against ``exp(targ)`` (targets in log space, as in
    the Rossmann competition); over the whole set as ``metrics=exp_rmspe``.

    >>> round(float(exp_rmspe(torch.tensor([0.0]), torch.tensor([0.0]))), 6)
    0.0
    """
    _check_one_per_target(pred, targ, "exp_rmspe")
    p, t = torch.exp(pred.reshape(targ.shape).float()), torch.exp(targ.float())
    return (((t - p) / t) ** 2).mean().sqrt()


exp_rmspe.make_metric = _ExpRMSPE  # type: ignore[attr-defined]


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


# --- metrics computed from all predictions (scikit-learn) --------------------------------------------
class _SkMetric(Metric):
    """Gathers decoded predictions and targets, then calls a scikit-learn scorer once."""

    def __init__(self, name: str, probs: bool = False, average: str = "binary", pos_label: int = 1,
                 labels: list[int] | None = None):
        self.name, self.probs, self.average, self.pos_label, self.labels = name, probs, average, pos_label, labels
        self.reset()

    def reset(self):
        self.preds, self.targs = [], []

    def accumulate(self, pred, targ):
        pred = pred.detach().float()
        self.preds.append(pred.softmax(dim=1).cpu() if self.probs else pred.argmax(dim=1).cpu())
        self.targs.append(targ.detach().cpu())

    def _score(self, y_true, y_pred):
        raise NotImplementedError

    @property
    def value(self):
        if not self.preds:
            return float("nan")
        return float(self._score(torch.cat(self.targs).numpy(), torch.cat(self.preds).numpy()))


def _sk_class_score(fn: str, y, p, average: str, pos_label: int) -> float:
    """One of scikit-learn's ``f1_score``/``precision_score``/``recall_score`` (what `F1Score`, `Precision` and
    `Recall` differ by)."""
    import sklearn.metrics
    return getattr(sklearn.metrics, fn)(y, p, average=average, pos_label=pos_label, zero_division=0)


class F1Score(_SkMetric):
    """F1 score (``average='binary'`` for 2 classes, or ``'macro'``, ``'micro'``, ``'weighted'``)."""

    def __init__(self, average: str = "binary", pos_label: int = 1):
        super().__init__("f1_score", average=average, pos_label=pos_label)

    def _score(self, y, p):
        return _sk_class_score("f1_score", y, p, self.average, self.pos_label)


class F1ScoreMulti(Metric):
    """Multi-label F1 (fastai's ``F1ScoreMulti``): logits through a sigmoid (``sigmoid``), thresholded at
    ``thresh``, scored over all items and labels with scikit-learn's ``f1_score`` (``average='macro'``: the
    mean of the per-label F1; or ``'micro'``, ``'weighted'``, ``'samples'``).

    >>> m = F1ScoreMulti(); m.reset()
    >>> m.accumulate(torch.tensor([[5., -5.], [5., 5.]]), torch.tensor([[1., 0.], [1., 0.]]))
    >>> round(m.value, 4)
    0.5
    """

    def __init__(self, thresh: float = 0.5, sigmoid: bool = True, average: str = "macro"):
        self.name, self.thresh, self.sigmoid, self.average = "f1_score_multi", thresh, sigmoid, average
        self.reset()

    def reset(self):
        self.preds, self.targs = [], []

    def accumulate(self, pred, targ):
        if pred.shape != targ.shape:
            raise ValueError(f"F1ScoreMulti needs one score per label: predictions {list(pred.shape)}, targets "
                             f"{list(targ.shape)}; for one class per item use F1Score")
        pred = pred.detach().float()
        self.preds.append(((pred.sigmoid() if self.sigmoid else pred) > self.thresh).cpu())
        self.targs.append(targ.detach().cpu().bool())

    @property
    def value(self):
        if not self.preds:
            return float("nan")
        from sklearn.metrics import f1_score
        return float(f1_score(torch.cat(self.targs).numpy(), torch.cat(self.preds).numpy(), average=self.average,
                              zero_division=0))


class Precision(_SkMetric):
    """Precision (see `F1Score` for ``average``)."""

    def __init__(self, average: str = "binary", pos_label: int = 1):
        super().__init__("precision", average=average, pos_label=pos_label)

    def _score(self, y, p):
        return _sk_class_score("precision_score", y, p, self.average, self.pos_label)


class Recall(_SkMetric):
    """Recall (see `F1Score` for ``average``)."""

    def __init__(self, average: str = "binary", pos_label: int = 1):
        super().__init__("recall", average=average, pos_label=pos_label)

    def _score(self, y, p):
        return _sk_class_score("recall_score", y, p, self.average, self.pos_label)


class BalancedAccuracy(_SkMetric):
    """Balanced accuracy: the mean of the per-class recalls (scikit-learn's ``balanced_accuracy_score``)."""

    higher_is_better = True

    def __init__(self):
        super().__init__("balanced_accuracy")

    def _score(self, y, p):
        from sklearn.metrics import balanced_accuracy_score
        return balanced_accuracy_score(y, p)


class RocAuc(_SkMetric):
    """Area under the ROC curve from softmax probabilities (one-vs-rest ``average='macro'`` for >2 classes)."""

    def __init__(self, average: str = "macro"):
        super().__init__("roc_auc", probs=True, average=average)

    def _score(self, y, p):
        from sklearn.metrics import roc_auc_score
        if p.shape[1] == 2:
            return roc_auc_score(y, p[:, 1])
        return roc_auc_score(y, p, average=self.average, multi_class="ovr", labels=list(range(p.shape[1])))


class RocAucBinary(RocAuc):
    """ROC AUC for two classes from the positive class' probability."""
