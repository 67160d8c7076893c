"""`SegmentationInterpretation`: the images a segmentation model does worst on, and its pixel confusion.

The loss of an image is the learner's loss on that image alone (its mean over the non-void pixels).

>>> import torch
>>> interp = SegmentationInterpretation(torch.tensor([[[0, 1]], [[1, 1]]]), torch.tensor([[[0, 0]], [[1, 2]]]),
...                                     torch.tensor([0.7, 0.1]), codes=["a", "b", "void"], void_code=2)
>>> interp.top_losses(1)[1].tolist()            # the index of the worst image
[0]
>>> interp.confusion_matrix().tolist()          # pixels [actual, predicted]; void targets left out
[[1, 1, 0], [0, 1, 0], [0, 0, 0]]
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .show import show_segmentation
from ...core.data import raw_loader

if TYPE_CHECKING:  # pragma: no cover
    from ...core.learner import Learner

__all__ = ["SegmentationInterpretation"]


class SegmentationInterpretation:
    """Predicted masks, target masks and per-image losses over one loader (the validation set by default).

    Args:
        decoded / targs: ``[N, H, W]`` predicted and target class indices.
        losses: ``[N]`` per-image losses.
        codes: the class names; ``void_code``: the mask value left out of the confusion matrix.
        learn / dl: where the images come from, for `plot_top_losses` (set by `from_learner`).

    >>> interp = SegmentationInterpretation(torch.tensor([[[0, 1, 1]]]), torch.tensor([[[0, 1, 0]]]),
    ...                                     torch.tensor([0.4]), codes=["road", "car"])
    >>> interp.confusion_matrix().tolist(), interp.per_class_iou()     # one road pixel predicted as car
    ([[1, 1], [0, 1]], {'road': 0.5, 'car': 0.5})
    """

    def __init__(self, decoded: torch.Tensor, targs: torch.Tensor, losses: torch.Tensor, codes: Sequence[Any],
                 void_code: int | None = None, learn: "Learner | None" = None, dl: Any = None):
        if decoded.shape != targs.shape or decoded.ndim != 3 or losses.shape != decoded.shape[:1]:
            raise ValueError(f"SegmentationInterpretation needs [N, H, W] predicted and target masks and [N] losses, "
                             f"got {tuple(decoded.shape)}, {tuple(targs.shape)} and {tuple(losses.shape)}")
        self.decoded, self.targs, self.losses = decoded.long(), targs.long(), losses.float()
        self.codes, self.void_code, self.learn, self.dl = list(codes), void_code, learn, dl

    @classmethod
    def from_learner(cls, learn: "Learner", ds_idx: int = 1, dl: Any = None) -> "SegmentationInterpretation":
        """Run ``learn`` over ``learn.dls[ds_idx]`` (or ``dl``, which must not shuffle) and keep the masks and
        per-image losses (not the probabilities: they would take ``N * C * H * W`` floats)."""
        dl = learn.dls[ds_idx] if dl is None else raw_loader(dl)
        if dl is None:
            raise ValueError(f"split {ds_idx} is empty; pass ds_idx=0 or a labelled dl")
        _, targs, decoded, losses = learn.get_preds(dl=dl, with_decoded=True, with_loss=True)
        if targs is None:
            raise ValueError("the loader has no masks; interpretation needs a labelled loader")
        return cls(decoded, targs, losses, learn.dls.codes, getattr(learn.dls, "void_code", None), learn, dl)

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest (or smallest) per-image losses and their indices into the loader's dataset."""
        k = len(self.losses) if k is None else min(int(k), len(self.losses))
        return self.losses.topk(k, largest=largest)

    def confusion_matrix(self) -> np.ndarray:
        """Pixel counts ``cm[actual, predicted]``, ``[C, C]`` (``C`` = len(codes)), over the pixels whose target is
        not void: the void row is zero, the void column counts pixels predicted as void."""
        c = len(self.codes)
        t, d = self.targs.reshape(-1), self.decoded.reshape(-1)
        keep = (t >= 0) & (t < c)
        if self.void_code is not None:
            keep &= t != self.void_code
        return torch.bincount(t[keep] * c + d[keep].clamp(0, c - 1), minlength=c * c).reshape(c, c).numpy()

    def per_class_iou(self) -> dict[Any, float]:
        """Intersection over union of every (non-void) class present in the targets or predictions."""
        cm = self.confusion_matrix()
        inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
        return {n: float(inter[i] / union[i]) for i, n in enumerate(self.codes)
                if i != self.void_code and union[i] > 0}

    def _images(self, idxs: Sequence[int]) -> torch.Tensor:
        """The decoded images at dataset positions ``idxs`` (one pass over the loader, in its order)."""
        if self.learn is None or self.dl is None:
            raise ValueError("no images to show: build the interpretation with from_learner")
        dls, wanted, found, start = self.learn.dls, set(idxs), {}, 0
        for batch in self.dl:
            n = len(batch[0])
            hit = [i for i in range(start, start + n) if i in wanted]
            if hit:
                x = dls.prepare_batch(batch, False)[0]
                imgs = dls.decode_images(x[[i - start for i in hit]])
                found.update({i: img.cpu() for i, img in zip(hit, imgs)})
            start += n
            if len(found) == len(wanted):
                break
        return torch.stack([found[i] for i in idxs])

    def plot_top_losses(self, k: int = 4, largest: bool = True, alpha: float = 0.5,
                        figsize: tuple[float, float] | None = None):
        """The ``k`` images with the largest (or smallest) loss: target and predicted masks side by side,
        each row titled with its loss. Returns the figure."""
        losses, idxs = self.top_losses(k, largest)
        idxs = idxs.tolist()
        fig = show_segmentation(self._images(idxs), [self.targs[idxs], self.decoded[idxs]], self.codes,
                                self.void_code, titles=["target", "prediction"], alpha=alpha, figsize=figsize)
        for row, (loss, i) in enumerate(zip(losses.tolist(), idxs)):
            fig.axes[2 * row].set_title(f"#{i} target (loss {loss:.3f})", fontsize=9)
            fig.axes[2 * row + 1].set_title("prediction", fontsize=9)
        return fig
