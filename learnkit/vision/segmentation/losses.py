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

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...core.registry import register_loss

__all__ = ["DiceLoss", "FocalLossFlat", "CrossEntropyDiceLoss", "class_weights", "median_frequency_weights"]


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
    
    >>> targ = torch.tensor([[[0, 1], [1, 255]]])                # one 2x2 mask; 255: a void pixel
    >>> right = F.one_hot(targ.clamp(max=1), 2).movedim(-1, 1).float() * 20   # confident logits, all correct
    >>> loss = DiceLoss(ignore_index=255)
    >>> round(loss(right, targ).item(), 3), round(loss(-right, targ).item(), 3), loss.decodes(right)[0, 0].tolist()
    (0.0, 0.75, [0, 1])
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
    """Focal loss: cross-entropy scaled by ``(1 - p_true) ** gamma``, averaged over pixels not ignored.

    >>> pred, targ = torch.tensor([[[[2.0]], [[0.0]]]]), torch.tensor([[[0]]])    # one pixel: p(true class) = 0.88
    >>> round(F.cross_entropy(pred, targ).item(), 4), round(FocalLossFlat(gamma=2.0)(pred, targ).item(), 4)
    (0.1269, 0.0018)
    """

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
    from the second.

    >>> pred, targ = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    >>> loss = CrossEntropyDiceLoss(dice_weight=0.5)
    >>> torch.allclose(loss(pred, targ), F.cross_entropy(pred, targ) + 0.5 * DiceLoss()(pred, targ)), loss.export_config()
    (True, {'ignore_index': -100, 'dice_weight': 0.5, 'smooth': 1.0})
    """

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


# --- class weights for a weighted cross-entropy ---------------------------------------------------------
def median_frequency_weights(counts: torch.Tensor | list[float], power: float = 0.5, max_weight: float = 10.0,
                             ignore_index: int | None = None) -> torch.Tensor:
    """Class weights ``(median frequency / frequency) ** power``, capped at ``max_weight``, from pixel counts.

    ``power=1`` is SegNet's median-frequency balancing; the default ``0.5`` (its square root) lifts rare
    classes less far. The class ``ignore_index`` and classes with no pixels get weight 1 and are left out
    of the median (the lower of the two middle values for an even number of classes).

    >>> median_frequency_weights([100, 400, 25, 0, 50], ignore_index=4).tolist()
    [1.0, 0.5, 2.0, 1.0, 1.0]
    """
    counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if power < 0 or max_weight <= 0:
        raise ValueError(f"power must be >= 0 and max_weight > 0, got power={power}, max_weight={max_weight}")
    n = len(counts)
    keep = torch.tensor([i != ignore_index and counts[i] > 0 for i in range(n)], dtype=torch.bool)
    if not keep.any():
        raise ValueError("no class has any pixel (besides the ignored one): cannot weight the classes")
    freq = counts / counts[keep].sum()
    w = torch.ones(n, dtype=torch.float64)
    w[keep] = (freq[keep].median() / freq[keep]).pow(power).clamp(max=max_weight)
    return w.float()


def class_weights(dls, power: float = 0.5, max_weight: float = 10.0) -> torch.Tensor:
    """`median_frequency_weights` of the pixel counts of each code in the training masks of ``dls`` (a
    `SegmentationDataLoaders`); the void code gets 1. For ``CrossEntropyLossFlat(class_weights(dls),
    ignore_index=dls.ignore_index)``: small classes (pole, sign, pedestrian...) weigh more.

    Reads every training mask once (through the dataset, so ``cache=True`` loaders read their cache).

    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> from pathlib import Path
    >>> from learnkit.vision.segmentation import SegmentationDataLoaders
    >>> d = Path(tempfile.mkdtemp()); (d / "img").mkdir(); (d / "lbl").mkdir()
    >>> for i in range(5):  # each mask: 8 pixels of road, 4 of car, 2 of sign, 2 of void
    ...     Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(d / "img" / f"{i}.png")
    ...     m = np.array([0] * 8 + [1] * 4 + [2] * 2 + [3] * 2, np.uint8).reshape(4, 4)
    ...     Image.fromarray(m).save(d / "lbl" / f"{i}.png")
    >>> dls = SegmentationDataLoaders.from_label_func(d, sorted((d / "img").iterdir()), lambda o: d / "lbl" / o.name,
    ...                                               codes=["road", "car", "sign", "void"], void_code="void", bs=2,
    ...                                               device="cpu")
    >>> class_weights(dls, power=1.0).tolist()   # median frequency: car's
    [0.5, 1.0, 2.0, 1.0]
    """
    codes, void = getattr(dls, "codes", None), getattr(dls, "void_code", None)
    if codes is None:
        raise TypeError(f"class_weights needs SegmentationDataLoaders (with .codes), got {type(dls).__name__}")
    n = len(codes)
    counts = torch.zeros(n, dtype=torch.float64)
    ds = dls.train.dataset
    for i in range(len(ds)):
        mask = torch.as_tensor(np.asarray(ds[i][1])).long().flatten()
        counts += torch.bincount(mask[(mask >= 0) & (mask < n)], minlength=n)[:n].double()
    return median_frequency_weights(counts, power, max_weight, ignore_index=void)
