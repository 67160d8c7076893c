"""Showing things: a table (``display_df``: HTML in a notebook, aligned text in a terminal), and a `Learner`'s
``summary``, ``show_training_loop``, ``no_bar`` and its text/HTML representation (from `DisplayMixin`).

>>> import pandas as pd
>>> _ = display_df(pd.DataFrame({"a": [1]}), show=False)
>>> import torch
>>> from torch.utils.data import TensorDataset
>>> ds = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
>>> learn = Learner(DataLoaders.from_dsets(ds, ds, bs=4, device="cpu"), torch.nn.Linear(2, 1),
...                 loss_func=MSELossFlat(), progress=False)
>>> learn.summary(show=False).total_params
3
>>> repr(learn).startswith("Learner(model=Linear, parameters=3 (3 trainable)")
True
"""
from __future__ import annotations

import contextlib
import html
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from .callback import describe_training_loop
from .callbacks.progress import in_notebook
from .summary import LearnerSummary, model_summary

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["display_df", "DisplayMixin"]


def display_df(df: pd.DataFrame, show: bool = True, max_colwidth: int | None = None) -> pd.DataFrame:
    """Display ``df`` (HTML in a notebook, text otherwise; cells cut at ``max_colwidth`` characters) and
    return it for further use.

    >>> df = display_df(pd.DataFrame({"name": ["Alice", "Bob"], "review": ["A fine film, well acted.", "Too long."]}),
    ...                 max_colwidth=10)  # printed in a terminal (an HTML table in a notebook), returned
       name      review
    0  Alice  A fine ...
    1    Bob   Too long.
    >>> df.shape
    (2, 2)
    """
    if show:
        if in_notebook():
            from IPython.display import display  # IPython is there whenever in_notebook() is true, not always
            display(df)
        else:
            with pd.option_context("display.max_columns", None, "display.width", 200,
                                   "display.max_colwidth", max_colwidth):
                print(df.to_string())
    return df


class DisplayMixin:
    """The display methods of `Learner` (task learners add ``show_results``)."""

    @contextlib.contextmanager
    def no_bar(self: Learner) -> Iterator[None]:
        """No progress bars and no per-epoch table inside the ``with`` block."""
        old, self.show_progress = self.show_progress, False
        try:
            yield
        finally:
            self.show_progress = old

    def show_training_loop(self: Learner) -> None:
        """Print every event of ``fit`` in order, with the callbacks that handle it (fastai's name)."""
        print(describe_training_loop(self.cbs))

    def summary(self: Learner, show: bool = True) -> LearnerSummary:
        """fastai's per-layer table from one validation-mode batch: layer type, output shape, parameters and
        whether they train, then the input shape, parameter totals, optimizer, loss and callbacks. Printed
        (``show``; HTML in a notebook) and returned (a `learnkit.core.summary.LearnerSummary`)."""
        dl = self.dls[1] if self.dls.valid is not None else (self.dls[0] if self.dls.train is not None else None)
        if dl is None:
            raise ValueError("summary runs the model on one batch, but this learner has no data (load_learner): "
                             "use learnkit.core.summary.model_summary(learn.model, xb) with a batch of yours")
        batch = self.dls.prepare_batch(next(iter(dl)), False, self.device)
        groups = self.param_groups()
        n_frozen = next((i for i, g in enumerate(groups) if any(p.requires_grad for p in g)), len(groups))
        note = f"Model frozen up to parameter group #{n_frozen}" if n_frozen else ""
        with self.autocast():
            res = model_summary(self.model, tuple(batch[: self.dls.n_inp]),
                                optimizer=getattr(self.opt_func, "__name__", repr(self.opt_func)),
                                loss=repr(self.loss_func), callbacks=[type(c).__name__ for c in self.cbs],
                                frozen_note=note)
        if show:
            if in_notebook():
                from IPython.display import HTML, display  # IPython is there whenever in_notebook() is true
                display(HTML(res._repr_html_()))
            else:
                print(res)
        return res

    def _overview(self: Learner) -> dict[str, Any]:
        n = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"model": type(self.model).__name__, "parameters": f"{n:,} ({n_train:,} trainable)",
                "loss": type(self.loss_func).__name__,
                "optimizer": getattr(self.opt_func, "__name__", str(self.opt_func)),
                "metrics": ", ".join(m.name for m in self.metrics) or "-", "device": str(self.device),
                "precision": self.precision, "callbacks": ", ".join(type(c).__name__ for c in self.cbs)}

    def __repr__(self: Learner) -> str:
        return "Learner(" + ", ".join(f"{k}={v}" for k, v in self._overview().items()) + ")"

    def _repr_html_(self: Learner) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                       f"{html.escape(str(v))}</td></tr>" for k, v in self._overview().items())
        return f"<table>{rows}</table>{self.dls._repr_html_()}"
