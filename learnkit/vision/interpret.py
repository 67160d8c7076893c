"""`ClassificationInterpretation` for images: the core one (confusion matrix, most confused pairs,
classification report) plus `plot_top_losses`, the images the model is most wrong about.

>>> interp = ClassificationInterpretation(["cat", "dog"], torch.tensor([[.9, .1], [.2, .8], [.6, .4]]),
...                                       torch.tensor([0, 1, 1]), torch.tensor([.1, .2, .9]))
>>> interp.confusion_matrix().tolist(), interp.most_confused()
([[1, 0], [1, 1]], [('dog', 'cat', 1)])
"""
from __future__ import annotations

from typing import Any

import torch

from ..core.interpret import ClassificationInterpretation as _CoreInterpretation

__all__ = ["ClassificationInterpretation"]


class ClassificationInterpretation(_CoreInterpretation):
    """`learnkit.core.interpret.ClassificationInterpretation` with `plot_top_losses` for image datasets.

    >>> images = [(torch.zeros(3, 8, 8, dtype=torch.uint8), 0), (torch.full((3, 8, 8), 255, dtype=torch.uint8), 1)]
    >>> interp = ClassificationInterpretation(["cat", "dog"], torch.tensor([[.9, .1], [.7, .3]]),
    ...                                       torch.tensor([0, 1]), torch.tensor([.1, 1.2]), dataset=images)
    >>> fig = interp.plot_top_losses(k=1)
    >>> fig.axes[0].get_title()              # predicted / actual, then the loss / the probability of the actual class
    'cat / dog\\n1.20 / 0.30'
    """

    learn: Any = None

    @classmethod
    def from_learner(cls, learn: Any, ds_idx: int = 1, dl: Any = None) -> "ClassificationInterpretation":
        """Run ``learn`` over the validation loader (or ``dl``); the learner is kept for ``cam=True``."""
        interp = super().from_learner(learn, ds_idx, dl)
        interp.learn = learn
        return interp

    def plot_top_losses(self, k: int = 9, largest: bool = True, nrows: int | None = None,
                        figsize: tuple[float, float] | None = None, cam: bool = False, method: str = "gradcam",
                        alpha: float = 0.5):
        """The ``k`` images with the largest losses, titled ``predicted / actual / loss / probability of the
        actual class``; returns the figure. ``cam=True`` overlays on each the class activation map of the
        predicted class (`learnkit.vision.cam`, ``method`` ``"gradcam"`` or ``"hirescam"``): what the model
        looked at when it got it wrong. It needs an interpretation made by ``from_learner``."""
        if self.dataset is None:
            raise ValueError("no images to show: build the interpretation with from_learner")
        from .show import show_images
        losses, idx = self.top_losses(k, largest)
        images, titles = [], []
        for loss, i in zip(losses.tolist(), idx.tolist()):
            img = self.dataset[i][0]
            images.append(img.float() / 255 if img.dtype == torch.uint8 else img)
            t = int(self.targs[i])
            titles.append(f"{self.vocab[int(self.decoded[i])]} / {self.vocab[t]}\n{loss:.2f} / {float(self.probs[i, t]):.2f}")
        fig = show_images(images, titles, nrows=nrows, figsize=figsize)
        if cam:
            self._overlay_cams(fig, [self.dataset[i][0] for i in idx.tolist()], self.decoded[idx], method, alpha)
        return fig

    def _overlay_cams(self, fig: Any, items: list, targets: torch.Tensor, method: str, alpha: float) -> None:
        from ..core.device import to_device
        from .cam import grad_cam, overlay_cam
        learn = self.learn
        if learn is None:
            raise ValueError("cam=True needs the model: build the interpretation with "
                             "ClassificationInterpretation.from_learner(learn)")
        for ax, item, t in zip(fig.axes, items, targets.tolist()):
            x = learn.dls.prepare_images(to_device(item[None], learn.device), training=False)
            maps, _ = grad_cam(learn.model, x, t, method=method)
            overlay_cam(ax, maps[0], tuple(item.shape[-2:]), alpha=alpha)
