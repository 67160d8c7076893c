"""What a metric is: the `Metric` protocol (``reset``, ``accumulate`` per batch, ``value``), `AvgMetric` for
per-item means, `TorchMetric` for ``torchmetrics.Metric`` instances, `as_metric` that makes any of them
from what ``metrics=`` was given, and `whole_set` for function metrics that are not a mean.

The metrics themselves live in `learnkit.core.metrics` (functions), `learnkit.core.classmetrics`
(scikit-learn-backed classes) and `learnkit.core.segmetrics` (segmentation).

>>> m = AvgMetric(lambda pred, targ: (pred == targ).float().mean(), name="same"); m.reset()
>>> m.accumulate(torch.tensor([1, 2]), torch.tensor([1, 0])); m.accumulate(torch.tensor([3]), torch.tensor([3]))
>>> m.name, round(m.value, 4)   # 2 of 3 items, whatever the batch sizes
('same', 0.6667)
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["Metric", "AvgMetric", "TorchMetric", "as_metric", "whole_set", "run_metric", "metric_value"]


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
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.detach().float().reshape(())
        elif isinstance(v, (int, float)) and not isinstance(v, bool) or type(v).__module__ == "numpy" and getattr(v, "size", 0) == 1:
            v = float(v)
        else:
            shown = f"a tensor of shape {list(v.shape)}" if isinstance(v, torch.Tensor) else f"{v!r} ({type(v).__name__})"
            raise TypeError(f"the metric function returned {shown}; a metric returns one number per batch (a float "
                            "or a one-element tensor), e.g. (pred.argmax(1) == targ).float().mean()")
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


_SAME_TYPE = (ValueError, TypeError, RuntimeError, IndexError, KeyError, ZeroDivisionError, AttributeError,
              NotImplementedError, AssertionError)


def run_metric(m: Metric, step: str, f: Any, *args: Any) -> Any:
    """``f(*args)`` (``m.accumulate``, or reading ``m.value``), re-raising an error with the metric's name and the
    step in front of its message (of the same type for the common built-in errors, else a ``RuntimeError``).

    >>> def broken(pred, targ): raise KeyError("boom")
    >>> m = AvgMetric(broken)
    >>> run_metric(m, "accumulate", m.accumulate, torch.zeros(2), torch.zeros(2))
    Traceback (most recent call last):
    ...
    KeyError: "metric 'broken' failed (accumulate, on a validation batch): KeyError: 'boom'"
    """
    try:
        return f(*args)
    except Exception as e:  # noqa: BLE001 - re-raised with the metric's name
        if f"metric {m.name!r}" in str(e):
            raise
        where = "on a validation batch" if step == "accumulate" else "at the end of validation"
        msg = f"metric {m.name!r} failed ({step}, {where}): {type(e).__name__}: {e}"
        cls = type(e) if type(e) in _SAME_TYPE else RuntimeError
        raise cls(msg) from e


def metric_value(m: Metric) -> float:
    """``m.value`` as a float, or an error naming the metric when it is not one number.

    >>> metric_value(AvgMetric(lambda p, t: p.mean(), name="avg"))  # no batch seen yet: NaN
    nan
    """
    v = run_metric(m, "value", lambda: m.value)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)) and not (type(v).__module__ == "numpy"
                                                                       and getattr(v, "size", 0) == 1):
        shown = f"a tensor of shape {list(v.shape)}" if isinstance(v, torch.Tensor) else f"{v!r} ({type(v).__name__})"
        raise TypeError(f"metric {m.name!r} has the value {shown}; a metric's value is one number per epoch")
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
