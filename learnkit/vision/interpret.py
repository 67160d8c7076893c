"""`ClassificationInterpretation`: where a classifier goes wrong (confusion matrix, most confused pairs,
the images it is most wrong about).

>>> interp = ClassificationInterpretation(["cat", "dog"], torch.tensor([[.9, .1], [.2, .8], [.6, .4]]),
...                                       torch.tensor([0, 1, 1]), torch.tensor([.1, .2, .9]))
>>> interp.confusion_matrix().tolist(), interp.most_confused()
([[1, 0], [1, 1]], [('dog', 'cat', 1)])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..core.learner import Learner

__all__ = ["ClassificationInterpretation"]


class ClassificationInterpretation:
    """Predictions of a single-label classifier over one loader, and views of its mistakes.

    Attributes: ``vocab``, ``probs`` ``[N, C]``, ``targs`` ``[N]``, ``decoded`` (argmax), ``losses`` ``[N]``,
    and ``dataset`` (to show the images, when built by `from_learner`).
    """

    def __init__(self, vocab: Sequence[Any], probs: torch.Tensor, targs: torch.Tensor, losses: torch.Tensor,
                 dataset: Any = None):
        if probs.ndim != 2 or targs.ndim != 1:
            raise ValueError("ClassificationInterpretation needs single-label predictions ([N, C] probabilities and "
                             f"[N] targets); got {tuple(probs.shape)} and {tuple(targs.shape)}. Multi-label models "
                             "have no confusion matrix.")
        self.vocab, self.probs, self.targs, self.losses = list(vocab), probs, targs.long(), losses
        self.decoded = probs.argmax(1)
        self.dataset = dataset

    @classmethod
    def from_learner(cls, learn: "Learner", ds_idx: int = 1, dl: Any = None) -> "ClassificationInterpretation":
        """Run ``learn`` over the validation loader (or ``dl``) and keep predictions, targets and losses."""
        dl = learn.dls[ds_idx] if dl is None else dl
        probs, targs, losses = learn.get_preds(dl=dl, with_loss=True)
        if targs is None:
            raise ValueError("the loader has no labels; interpretation needs a labelled loader")
        return cls(learn.dls.vocab, probs, targs, losses, getattr(dl, "dataset", None))

    def confusion_matrix(self) -> np.ndarray:
        """``cm[actual, predicted]`` counts, ``[C, C]``."""
        c = len(self.vocab)
        return torch.bincount(self.targs * c + self.decoded, minlength=c * c).reshape(c, c).numpy()

    def most_confused(self, min_val: int = 1) -> list[tuple[Any, Any, int]]:
        """``(actual, predicted, count)`` for the off-diagonal cells with at least ``min_val``, largest first."""
        cm = self.confusion_matrix()
        pairs = [(self.vocab[i], self.vocab[j], int(cm[i, j])) for i in range(len(cm)) for j in range(len(cm))
                 if i != j and cm[i, j] >= min_val]
        return sorted(pairs, key=lambda t: -t[2])

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest (or smallest) losses and their indices into the loader's dataset."""
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k, largest=largest)

    def plot_confusion_matrix(self, normalize: bool = False, title: str = "Confusion matrix", cmap: str = "Blues",
                              figsize: tuple[float, float] | None = None):
        """The confusion matrix as a heat map with counts (or row fractions); returns the figure."""
        import matplotlib.pyplot as plt
        cm = self.confusion_matrix().astype(float)
        if normalize:
            cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        c = len(self.vocab)
        fig, ax = plt.subplots(figsize=figsize or (max(4, 0.6 * c + 2),) * 2)
        ax.imshow(cm, interpolation="nearest", cmap=cmap)
        ax.set_title(title)
        ticks = range(c)
        names = [str(v) for v in self.vocab]
        ax.set_xticks(ticks, names, rotation=90)
        ax.set_yticks(ticks, names)
        thresh = cm.max() / 2 if cm.size else 0
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}", ha="center", va="center",
                        color="white" if cm[i, j] > thresh else "black")
        ax.set_ylabel("actual")
        ax.set_xlabel("predicted")
        fig.tight_layout()
        return fig

    def plot_top_losses(self, k: int = 9, largest: bool = True, nrows: int | None = None,
                        figsize: tuple[float, float] | None = None):
        """The ``k`` images with the largest losses, titled ``predicted / actual / loss / probability of the
        actual class``; returns the figure."""
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
        return show_images(images, titles, nrows=nrows, figsize=figsize)
