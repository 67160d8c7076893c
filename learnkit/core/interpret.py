"""`ClassificationInterpretation`: where a single-label classifier goes wrong, for any task.

The confusion matrix, the most confused pairs, the largest losses and scikit-learn's classification
report. The vision and text versions (`learnkit.vision.ClassificationInterpretation`,
`learnkit.text.TextClassificationInterpretation`) add the views of their inputs (images, texts).

>>> import torch
>>> interp = ClassificationInterpretation(["cat", "dog"], torch.tensor([[.9, .1], [.2, .8], [.6, .4]]),
...                                       torch.tensor([0, 1, 1]), torch.tensor([.1, .2, .9]))
>>> interp.confusion_matrix().tolist(), interp.most_confused()
([[1, 0], [1, 1]], [('dog', 'cat', 1)])
>>> print(interp.print_classification_report(show=False).splitlines()[0].split())
['precision', 'recall', 'f1-score', 'support']
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from .data import raw_loader

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["ClassificationInterpretation"]


class ClassificationInterpretation:
    """Predictions of a single-label classifier over one loader, and views of its mistakes.

    Attributes: ``vocab``, ``probs`` ``[N, C]``, ``targs`` ``[N]``, ``decoded`` (argmax), ``losses`` ``[N]``,
    and ``dataset`` (the loader's items, when built by `from_learner`).

    >>> dl = TensorLoader(torch.randn(8, 2), torch.tensor([0, 1] * 4), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu", vocab=["cat", "dog"]), torch.nn.Linear(2, 2),
    ...                 loss_func=CrossEntropyLossFlat(), progress=False)
    >>> interp = ClassificationInterpretation.from_learner(learn)  # predictions over the validation set
    >>> interp.confusion_matrix().shape, int(interp.confusion_matrix().sum()), interp.probs.shape
    ((2, 2), 8, torch.Size([8, 2]))
    >>> losses, idx = interp.top_losses(3)  # the 3 worst items, by their index in the dataset
    >>> bool((losses[:-1] >= losses[1:]).all()), len(idx)
    (True, 3)
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
        dl = learn.dls[ds_idx] if dl is None else raw_loader(dl)
        probs, targs, losses = learn.get_preds(dl=dl, with_loss=True)
        if targs is None:
            raise ValueError("the loader has no labels; interpretation needs a labelled loader")
        targs = targs.reshape(-1) if targs.ndim == 2 and targs.shape[1] == 1 else targs
        return cls(learn.dls.vocab, probs, targs, losses, getattr(dl, "dataset", None))

    # --- numbers -------------------------------------------------------------------------------------
    def _cm(self) -> np.ndarray:
        c = len(self.vocab)
        return torch.bincount(self.targs * c + self.decoded, minlength=c * c).reshape(c, c).numpy()

    def confusion_matrix(self) -> Any:
        """``cm[actual, predicted]`` counts, ``[C, C]``."""
        return self._cm()

    def most_confused(self, min_val: int = 1) -> list[tuple[Any, Any, int]]:
        """``(actual, predicted, count)`` for the off-diagonal cells with at least ``min_val``, largest first."""
        cm = self._cm()
        pairs = [(self.vocab[i], self.vocab[j], int(cm[i, j])) for i in range(len(cm)) for j in range(len(cm))
                 if i != j and cm[i, j] >= min_val]
        return sorted(pairs, key=lambda t: -t[2])

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest (or smallest) losses and their indices into the loader's dataset."""
        k = len(self.losses) if k is None else min(int(k), len(self.losses))
        return self.losses.topk(k, largest=largest)

    def print_classification_report(self, show: bool = True) -> str:
        """scikit-learn's ``classification_report`` (precision, recall, F1 and support per class); printed
        and returned."""
        from sklearn.metrics import classification_report
        labels = list(range(len(self.vocab)))
        report = classification_report(self.targs.numpy(), self.decoded.numpy(), labels=labels,
                                       target_names=[str(v) for v in self.vocab], zero_division=0)
        if show:
            print(report)
        return report

    # --- plots ---------------------------------------------------------------------------------------
    def plot_confusion_matrix(self, normalize: bool = False, title: str = "Confusion matrix", cmap: str = "Blues",
                              norm_dec: int = 2, plot_txt: bool = True, figsize: tuple[float, float] | None = None,
                              dpi: int | None = None):
        """The confusion matrix as a heat map (fastai's arguments): counts, or row fractions with
        ``normalize`` written with ``norm_dec`` decimals; ``plot_txt=False`` leaves the cells blank.
        Returns the figure."""
        import matplotlib.pyplot as plt
        cm = self._cm().astype(float)
        if normalize:
            cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        c = len(self.vocab)
        fig, ax = plt.subplots(figsize=figsize or (max(4, 0.6 * c + 2),) * 2, dpi=dpi)
        ax.imshow(cm, interpolation="nearest", cmap=cmap)
        ax.set_title(title)
        names = [str(v) for v in self.vocab]
        ax.set_xticks(range(c), names, rotation=90)
        ax.set_yticks(range(c), names)
        if plot_txt:
            thresh = cm.max() / 2 if cm.size else 0
            for i in range(c):
                for j in range(c):
                    ax.text(j, i, f"{cm[i, j]:.{norm_dec}f}" if normalize else f"{int(cm[i, j])}", ha="center",
                            va="center", color="white" if cm[i, j] > thresh else "black")
        ax.set_ylabel("Actual")
        ax.set_xlabel("Predicted")
        fig.tight_layout()
        return fig
