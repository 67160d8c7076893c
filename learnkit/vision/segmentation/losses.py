"""Segmentation losses on logits ``[B, C, H, W]`` and class maps ``[B, H, W]``, all skipping ``ignore_index``.

The default loss of `SegmentationDataLoaders` is the core's ``CrossEntropyLossFlat(ignore_index=void)``.
These add soft Dice (overlap-based, insensitive to class frequency), focal loss (down-weights easy
pixels) and cross-entropy + Dice. Each has ``activation`` (softmax) and ``decodes`` (arg-max), so
``get_preds``/``predict`` work, and ``export_config`` for `export`.

>>> import torch
>>> pred, targ = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
>>> [round(float(f(pred, targ)), 3) >= 0 for f in (DiceLoss(), FocalLossFlat(), CrossEntropyDiceLoss())]
[True, True, True]
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...core.registry import register_loss

__all__ = ["DiceLoss", "FocalLossFlat", "CrossEntropyDiceLoss"]


class _SegLoss(nn.Module):
    """Softmax activation and arg-max decoding over the class axis 1."""

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().softmax(dim=1)

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(dim=1)


def _check(pred: torch.Tensor, targ: torch.Tensor) -> None:
    if pred.ndim != targ.ndim + 1 or pred.shape[0] != targ.shape[0] or pred.shape[2:] != targ.shape[1:]:
        raise ValueError(f"segmentation losses need logits [B, C, H, W] and class maps [B, H, W]; got "
                         f"{list(pred.shape)} and {list(targ.shape)}")


@register_loss
class DiceLoss(_SegLoss):
    """``1 - mean over classes of soft Dice`` between softmax probabilities and one-hot targets.

    Pixels whose target is ``ignore_index`` count for nothing; ``smooth`` keeps classes absent from a
    batch from dividing by zero.
    """

    def __init__(self, ignore_index: int = -100, smooth: float = 1.0):
        super().__init__()
        self.ignore_index, self.smooth = ignore_index, smooth

    def export_config(self) -> dict:
        return {"ignore_index": self.ignore_index, "smooth": self.smooth}

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        _check(pred, targ)
        c = pred.shape[1]
        targ = targ.long()
        keep = (targ != self.ignore_index) & (targ >= 0) & (targ < c)
        probs = pred.float().softmax(dim=1) * keep.unsqueeze(1)
        onehot = F.one_hot(torch.where(keep, targ, 0), c).movedim(-1, 1) * keep.unsqueeze(1)
        dims = (0, *range(2, pred.ndim))
        inter = (probs * onehot).sum(dims)
        total = probs.sum(dims) + onehot.sum(dims)
        return 1 - ((2 * inter + self.smooth) / (total + self.smooth)).mean()


@register_loss
class FocalLossFlat(_SegLoss):
    """Focal loss: cross-entropy scaled by ``(1 - p_true) ** gamma``, averaged over pixels not ignored."""

    def __init__(self, gamma: float = 2.0, ignore_index: int = -100):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma, self.ignore_index = gamma, ignore_index

    def export_config(self) -> dict:
        return {"gamma": self.gamma, "ignore_index": self.ignore_index}

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        _check(pred, targ)
        targ = targ.long()
        ce = F.cross_entropy(pred.float(), targ, ignore_index=self.ignore_index, reduction="none")
        keep = targ != self.ignore_index
        if not keep.any():
            return ce.sum() * 0.0
        pt = torch.exp(-ce)
        return ((1 - pt) ** self.gamma * ce)[keep].mean()


@register_loss
class CrossEntropyDiceLoss(_SegLoss):
    """``cross-entropy + dice_weight * DiceLoss``: pixel-wise accuracy from the first term, small classes
    from the second."""

    def __init__(self, ignore_index: int = -100, dice_weight: float = 1.0, smooth: float = 1.0):
        super().__init__()
        self.ignore_index, self.dice_weight = ignore_index, dice_weight
        self.dice = DiceLoss(ignore_index, smooth)

    def export_config(self) -> dict:
        return {"ignore_index": self.ignore_index, "dice_weight": self.dice_weight, "smooth": self.dice.smooth}

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        _check(pred, targ)
        ce = F.cross_entropy(pred.float(), targ.long(), ignore_index=self.ignore_index)
        return ce + self.dice_weight * self.dice(pred, targ)
