"""Segmentation metrics over all pixels of a set: per-class intersections and unions (`DiceMulti`,
`JaccardMulti`, binary `Dice`, `JaccardCoeff`) and `foreground_acc`, each ignoring a void class if asked.

>>> import torch
>>> m = DiceMulti(); m.reset()
>>> m.accumulate(torch.tensor([[[[5.]], [[0.]]]]), torch.tensor([[[0]]]))
>>> m.value
1.0
"""
from __future__ import annotations

import torch

from .metricbase import Metric, whole_set

__all__ = ["Dice", "DiceMulti", "JaccardCoeff", "JaccardMulti", "foreground_acc", "ForegroundAcc"]


class _Overlap(Metric):
    """Per-class intersection and union counts over all pixels, ignoring ``ignore_index``."""

    def __init__(self, name: str, ignore_index: int | None = None):
        self.name, self.ignore_index = name, ignore_index
        self.reset()

    def reset(self):
        self.inter, self.union, self.total = None, None, None

    def accumulate(self, pred, targ):
        c = pred.shape[1]
        p, t = pred.argmax(dim=1).flatten(), targ.flatten()
        if self.ignore_index is not None:
            keep = t != self.ignore_index
            p, t = p[keep], t[keep]
        inter = torch.bincount(t[p == t], minlength=c)[:c]  # int64 counts on the device: read once, in `value`
        sizes = torch.bincount(p, minlength=c)[:c] + torch.bincount(t.clamp(0, c - 1), minlength=c)[:c]
        if self.inter is None:
            self.inter, self.total = inter, sizes
        else:
            self.inter += inter
            self.total += sizes


class DiceMulti(_Overlap):
    """Mean over classes of Dice = 2|P∩T| / (|P|+|T|); classes absent from both are left out.

    >>> pred = torch.tensor([[[[5.0, 5.0, 0.0, 0.0]], [[0.0, 0.0, 5.0, 5.0]]]])  # [1, 2 classes, 1, 4]: 0 0 1 1
    >>> m = DiceMulti()
    >>> m.accumulate(pred, torch.tensor([[[0, 1, 1, 1]]]))
    >>> round(m.value, 4)  # the mean of class 0's 2/3 and class 1's 4/5
    0.7333
    """

    def __init__(self, ignore_index: int | None = None):
        super().__init__("dice_multi", ignore_index)

    @property
    def value(self):
        if self.inter is None:
            return float("nan")
        present = self.total > 0
        return float((2 * self.inter[present] / self.total[present]).mean())


class JaccardMulti(_Overlap):
    """Mean IoU over classes: |P∩T| / |P∪T|; classes absent from both are left out.

    >>> pred = torch.tensor([[[[5.0, 5.0, 0.0, 0.0]], [[0.0, 0.0, 5.0, 5.0]]]])  # [1, 2 classes, 1, 4]: 0 0 1 1
    >>> m = JaccardMulti()
    >>> m.accumulate(pred, torch.tensor([[[0, 1, 1, 1]]]))
    >>> round(m.value, 4), m.per_class()
    (0.5833, tensor([0.5000, 0.6667]))
    """

    def __init__(self, ignore_index: int | None = None):
        super().__init__("mean_iou", ignore_index)

    @property
    def value(self):
        if self.inter is None:
            return float("nan")
        union = self.total - self.inter
        present = union > 0
        return float((self.inter[present] / union[present]).mean())

    def per_class(self) -> torch.Tensor:
        """IoU of each class (NaN for classes absent from predictions and targets)."""
        union = (self.total - self.inter).float()
        return torch.where(union > 0, self.inter / union.clamp_min(1), torch.full_like(union, float("nan")))


class Dice(_Overlap):
    """Binary Dice coefficient of class 1 (foreground) vs the rest.

    >>> pred = torch.tensor([[[[5.0, 5.0, 0.0, 0.0]], [[0.0, 0.0, 5.0, 5.0]]]])  # [1, 2 classes, 1, 4]: 0 0 1 1
    >>> m = Dice()  # metrics=Dice(): the foreground (class 1) over every pixel of the validation set
    >>> m.accumulate(pred, torch.tensor([[[0, 1, 1, 1]]]))
    >>> round(m.value, 4)  # 2 * 2 / (2 + 3)
    0.8
    """

    def __init__(self, ignore_index: int | None = None):
        super().__init__("dice", ignore_index)

    @property
    def value(self):
        if self.inter is None:
            return float("nan")
        return float(2 * self.inter[1] / self.total[1]) if self.total[1] > 0 else float("nan")


class JaccardCoeff(_Overlap):
    """Binary Jaccard (IoU) of class 1 vs the rest.

    >>> pred = torch.tensor([[[[5.0, 5.0, 0.0, 0.0]], [[0.0, 0.0, 5.0, 5.0]]]])  # [1, 2 classes, 1, 4]: 0 0 1 1
    >>> m = JaccardCoeff()
    >>> m.accumulate(pred, torch.tensor([[[0, 1, 1, 1]]]))
    >>> round(m.value, 4)  # 2 pixels in both / 3 in either
    0.6667
    """

    def __init__(self, ignore_index: int | None = None):
        super().__init__("jaccard", ignore_index)

    @property
    def value(self):
        if self.inter is None:
            return float("nan")
        union = self.total[1] - self.inter[1]
        return float(self.inter[1] / union) if union > 0 else float("nan")


class ForegroundAcc(Metric):
    """Pixel accuracy over pixels whose target is not ``ignore_index`` (e.g. CamVid's void), over the whole set:
    what `foreground_acc` accumulates.

    >>> pred = torch.tensor([[[[5.0, 5.0, 0.0, 0.0]], [[0.0, 0.0, 5.0, 5.0]]]])  # [1, 2 classes, 1, 4]: 0 0 1 1
    >>> m = ForegroundAcc(ignore_index=0)  # what metrics=foreground_acc(ignore_index=0) accumulates
    >>> m.accumulate(pred, torch.tensor([[[0, 1, 1, 1]]]))
    >>> round(m.value, 4)  # 2 of the 3 pixels whose target is not 0
    0.6667
    """

    def __init__(self, ignore_index: int | None = None):
        self.name, self.ignore_index = "foreground_acc", ignore_index
        self.reset()

    def reset(self):
        self.correct, self.count = 0, 0  # tensors on the predictions' device after the first batch: no host sync

    def accumulate(self, pred, targ):
        p, t = pred.argmax(dim=1), targ
        keep = t != self.ignore_index if self.ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
        self.correct = self.correct + ((p == t) & keep).sum()
        self.count = self.count + keep.sum()

    @property
    def value(self):
        count = int(self.count)
        return int(self.correct) / count if count else float("nan")


@whole_set(ForegroundAcc)
def foreground_acc(pred: torch.Tensor, targ: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Pixel accuracy of ``pred [B, C, H, W]`` against ``targ [B, H, W]`` over pixels whose target is not
    ``ignore_index``. As a metric it counts pixels over the whole set: ``metrics=foreground_acc``, or
    ``metrics=foreground_acc(ignore_index=void)`` (same as ``partial(foreground_acc, ignore_index=void)``).

    >>> pred = torch.tensor([[[[5., 0.]], [[0., 5.]]]])  # pixel classes 0, 1
    >>> float(foreground_acc(pred, torch.tensor([[[0, 0]]]))), float(foreground_acc(pred, torch.tensor([[[0, 3]]]), 3))
    (0.5, 1.0)
    """
    p = pred.argmax(dim=1)
    keep = targ != ignore_index if ignore_index is not None else torch.ones_like(targ, dtype=torch.bool)
    return (p[keep] == targ[keep]).float().mean()
