"""`TextClassificationInterpretation`: the reviews a text classifier gets most confidently wrong.

>>> # interp = TextClassificationInterpretation.from_learner(learn)
>>> # interp.show_top_losses(5)        # text, actual, predicted, probability, loss
>>> # interp.confusion_matrix()
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from ..core.display import display_df
from ..core.interpret import ClassificationInterpretation
from ..core.learner import Learner
from ..core.data import raw_loader

__all__ = ["TextClassificationInterpretation"]


class TextClassificationInterpretation(ClassificationInterpretation):
    """Predictions, targets and per-text losses over a labelled loader, with the texts they belong to.

    The core `ClassificationInterpretation` views (``most_confused``, ``plot_confusion_matrix``,
    ``print_classification_report``) work too; ``confusion_matrix()`` here is a labelled DataFrame.

    Build it with `from_learner` (validation set by default, or any ``dl`` from ``dls.test_dl(pairs,
    with_labels=True)``). The texts are the cleaned originals (not the truncated token view).

    >>> interp = TextClassificationInterpretation(["great film", "dull"], ["a.txt", "b.txt"], ["neg", "pos"],
    ...     torch.tensor([[0.2, 0.8], [0.1, 0.9]]), torch.tensor([1, 0]), torch.tensor([0.22, 2.3]))
    >>> interp.top_losses_table(1)[["text", "actual", "predicted", "probability", "source"]].values.tolist()
    [['dull', 'neg', 'pos', 0.9, 'b.txt']]
    >>> interp.confusion_matrix()
    predicted  neg  pos
    actual
    neg          0    1
    pos          0    1
    """

    def __init__(self, texts: list[str], sources: list[Any], vocab: list[Any], probs: torch.Tensor,
                 targs: torch.Tensor, losses: torch.Tensor):
        super().__init__(vocab, probs, targs, losses)
        self.texts, self.sources = texts, sources
        self.preds = self.decoded

    @classmethod
    def from_learner(cls, learn: Learner, ds_idx: int = 1, dl: Any = None) -> "TextClassificationInterpretation":
        dl = learn.dls[ds_idx] if dl is None else raw_loader(dl)
        ds = getattr(dl, "dataset", None)
        if ds is None or not hasattr(ds, "texts"):
            raise TypeError("the loader must come from TextDataLoaders (its dataset keeps the texts)")
        if getattr(dl, "batch_sampler", None) is not None and getattr(dl.batch_sampler, "shuffle", False):
            raise ValueError("interpretation needs a loader in dataset order: use the validation set (ds_idx=1) or "
                             "dls.test_dl(pairs, with_labels=True), not the shuffled training loader")
        probs, targs, losses = learn.get_preds(dl=dl, with_loss=True)
        if targs is None:
            raise ValueError("the loader has no labels: build it with dls.test_dl(pairs, with_labels=True)")
        return cls(ds.texts, ds.sources, learn.dls.vocab, probs, targs, losses)

    def top_losses_table(self, k: int = 5, max_chars: int = 300) -> pd.DataFrame:
        """The ``k`` texts with the largest loss: text, actual and predicted class, its probability, the loss."""
        losses, idxs = self.top_losses(k)
        rows = []
        for loss, i in zip(losses.tolist(), idxs.tolist()):
            text = self.texts[i]
            pred = int(self.preds[i])
            rows.append({"text": text if len(text) <= max_chars else text[: max_chars - 1] + "…",
                         "actual": self.vocab[int(self.targs[i])], "predicted": self.vocab[pred],
                         "probability": round(float(self.probs[i, pred]), 4), "loss": round(loss, 4),
                         "source": self.sources[i]})
        return pd.DataFrame(rows)

    def show_top_losses(self, k: int = 5, max_chars: int = 300) -> None:
        """Show the most confidently wrong texts (an HTML table in notebooks, text otherwise)."""
        display_df(self.top_losses_table(k, max_chars), max_colwidth=max_chars)

    def confusion_matrix(self) -> pd.DataFrame:
        """Counts of (actual row, predicted column)."""
        return pd.DataFrame(self._cm(), index=pd.Index(self.vocab, name="actual"),
                            columns=pd.Index(self.vocab, name="predicted"))
