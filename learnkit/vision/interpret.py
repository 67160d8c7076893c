"""`ClassificationInterpretation` for images: the core one (confusion matrix, most confused pairs,
classification report) plus `plot_top_losses`, the images the model is most wrong about.

>>> interp = ClassificationInterpretation(["cat", "dog"], torch.tensor([[.9, .1], [.2, .8], [.6, .4]]),
...                                       torch.tensor([0, 1, 1]), torch.tensor([.1, .2, .9]))
>>> interp.confusion_matrix().tolist(), interp.most_confused()
([[1, 0], [1, 1]], [('dog', 'cat', 1)])
"""
from __future__ import annotations

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
