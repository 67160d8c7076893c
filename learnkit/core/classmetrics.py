"""Classification metrics computed once from all predictions of a set, with scikit-learn: `F1Score`,
`Precision`, `Recall`, `BalancedAccuracy`, `RocAuc`, `RocAucBinary` (one class per item) and `F1ScoreMulti`
(multi-label). Each is a class (fastai's names): pass an instance, ``metrics=F1Score(average="macro")``.

>>> m = F1Score(); m.reset()
>>> m.accumulate(torch.tensor([[0., 1.], [1., 0.], [0., 1.]]), torch.tensor([1, 1, 0]))
>>> m.value
0.5
"""
from __future__ import annotations

import torch

from .metricbase import Metric

__all__ = ["F1Score", "F1ScoreMulti", "Precision", "Recall", "BalancedAccuracy", "RocAuc", "RocAucBinary"]


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
    """F1 score (``average='binary'`` for 2 classes, or ``'macro'``, ``'micro'``, ``'weighted'``).

    >>> pred = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])  # predicted classes 1, 1, 0, 0
    >>> m = F1Score(average="macro")  # Learner(..., metrics=F1Score(average="macro"))
    >>> m.accumulate(pred, torch.tensor([1, 0, 0, 0]))
    >>> round(m.value, 4)  # the mean of class 0's 0.8 and class 1's 0.667
    0.7333
    """

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
    """Precision (see `F1Score` for ``average``).

    >>> pred = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])  # predicted classes 1, 1, 0, 0
    >>> m = Precision()  # of class 1 (pos_label)
    >>> m.accumulate(pred, torch.tensor([1, 0, 0, 0]))
    >>> m.value  # 1 of the 2 predicted 1s is right
    0.5
    """

    def __init__(self, average: str = "binary", pos_label: int = 1):
        super().__init__("precision", average=average, pos_label=pos_label)

    def _score(self, y, p):
        return _sk_class_score("precision_score", y, p, self.average, self.pos_label)


class Recall(_SkMetric):
    """Recall (see `F1Score` for ``average``).

    >>> pred = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])  # predicted classes 1, 1, 0, 0
    >>> m = Recall()  # of class 1 (pos_label)
    >>> m.accumulate(pred, torch.tensor([1, 0, 0, 1]))
    >>> m.value  # 1 of the 2 actual 1s is found
    0.5
    """

    def __init__(self, average: str = "binary", pos_label: int = 1):
        super().__init__("recall", average=average, pos_label=pos_label)

    def _score(self, y, p):
        return _sk_class_score("recall_score", y, p, self.average, self.pos_label)


class BalancedAccuracy(_SkMetric):
    """Balanced accuracy: the mean of the per-class recalls (scikit-learn's ``balanced_accuracy_score``).

    >>> pred = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])  # predicted classes 1, 1, 0, 0
    >>> m = BalancedAccuracy()
    >>> m.accumulate(pred, torch.tensor([1, 0, 0, 0]))
    >>> round(m.value, 4)  # the mean of the recalls: class 0's 2/3 and class 1's 1
    0.8333
    """

    higher_is_better = True

    def __init__(self):
        super().__init__("balanced_accuracy")

    def _score(self, y, p):
        from sklearn.metrics import balanced_accuracy_score
        return balanced_accuracy_score(y, p)


class RocAuc(_SkMetric):
    """Area under the ROC curve from softmax probabilities (one-vs-rest ``average='macro'`` for >2 classes).

    >>> pred = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [0.0, 2.0, 1.0]])  # 3 classes
    >>> m = RocAuc()  # one class against the rest, averaged over classes
    >>> m.accumulate(pred, torch.tensor([0, 1, 2, 2]))
    >>> round(m.value, 4)  # classes 0 and 2: 1.0; class 1: 2/3 (item 3 scores above item 1)
    0.8889
    """

    def __init__(self, average: str = "macro"):
        super().__init__("roc_auc", probs=True, average=average)

    def _score(self, y, p):
        from sklearn.metrics import roc_auc_score
        if p.shape[1] == 2:
            return roc_auc_score(y, p[:, 1])
        return roc_auc_score(y, p, average=self.average, multi_class="ovr", labels=list(range(p.shape[1])))


class RocAucBinary(RocAuc):
    """ROC AUC for two classes from the positive class' probability.

    >>> pred = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])  # 2 classes
    >>> m = RocAucBinary()  # from the probability of class 1
    >>> m.accumulate(pred, torch.tensor([0, 1, 1, 1]))
    >>> m.value  # every positive item scores above the negative one
    1.0
    """
