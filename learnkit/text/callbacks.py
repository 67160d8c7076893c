"""The callbacks of recurrent text models: `ModelResetter` and `RNNRegularizer` (fastai's names).

A stateful model (`AWD_LSTM`, fastbook's ``LMModel3``...) keeps its hidden state between batches; its
``reset()`` must run at the start of training, of validation and after fitting — `ModelResetter` does that.
A model may return ``(out, raw_hidden, dropped_hidden)``: `RNNRegularizer` keeps the two hidden outputs,
replaces ``learn.pred`` with ``out`` in ``after_pred`` (so the loss and the metrics see the scores), and adds
activation regularisation (``alpha``: the size of the dropped outputs) and temporal activation
regularisation (``beta``: how much the raw outputs change from one step to the next) to the training loss.

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> class TinyLM(torch.nn.Module):
...     def __init__(self):
...         super().__init__(); self.emb = torch.nn.Embedding(5, 4); self.out = torch.nn.Linear(4, 5)
...     def reset(self): self.n_resets = getattr(self, "n_resets", 0) + 1
...     def forward(self, x):
...         h = self.emb(x); return self.out(h), h, h
>>> x = torch.randint(0, 5, (16, 6))
>>> dls = DataLoaders.from_dsets(TensorDataset(x, x), TensorDataset(x, x), bs=8, device="cpu")
>>> model = TinyLM()
>>> learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(axis=-1), progress=False,
...                 cbs=[ModelResetter(), RNNRegularizer(alpha=2.0, beta=1.0)])
>>> learn.fit(1); model.n_resets                    # before training, before validation, after the fit
3
"""
from __future__ import annotations

import torch

from ..core.callback import Callback

__all__ = ["ModelResetter", "RNNRegularizer"]


class ModelResetter(Callback):
    """Call ``learn.model.reset()`` before training, before validation and after fitting (when it has one).

    >>> ModelResetter().order
    0
    """

    keep_in_validate = True  # `TextLearner.validate` keeps it: a stateful model starts validation afresh

    def _reset(self) -> None:
        reset = getattr(self.learn.model, "reset", None)
        if callable(reset):
            reset()

    def before_train(self) -> None:
        self._reset()

    def before_validate(self) -> None:
        self._reset()

    def after_fit(self) -> None:
        self._reset()


class RNNRegularizer(Callback):
    """AR (``alpha``) and TAR (``beta``) regularisation of a model that returns ``(out, raw, dropped)``.

    In ``after_pred`` (training and validation) ``learn.pred`` becomes ``out`` and ``raw``/``dropped`` are kept
    (``self.raw_out``, ``self.out``); a model that returns a plain tensor is left alone. In training,
    ``after_loss`` adds ``alpha * mean(dropped²) + beta * mean((raw[t+1] - raw[t])²)`` to the loss that is
    back-propagated (the recorded loss stays the plain one).

    >>> cb = RNNRegularizer(alpha=2.0, beta=1.0); (cb.alpha, cb.beta, cb.order)
    (2.0, 1.0, 5)
    """

    order = 5  # before the metrics and the Recorder read learn.pred
    keep_in_validate = True

    def __init__(self, alpha: float = 0.0, beta: float = 0.0):
        self.alpha, self.beta = float(alpha), float(beta)
        self.raw_out = self.out = None

    def after_pred(self) -> None:
        pred = self.learn.pred
        if isinstance(pred, (tuple, list)) and len(pred) == 3:
            self.learn.pred, self.raw_out, self.out = (o[-1] if isinstance(o, (tuple, list)) else o for o in pred)
        else:
            self.raw_out = self.out = None

    def after_loss(self) -> None:
        if not self.learn.training or self.out is None or self.learn.loss_grad is None:
            return
        extra = torch.zeros((), device=self.out.device)
        if self.alpha:
            extra = extra + self.alpha * self.out.float().pow(2).mean()
        if self.beta and self.raw_out.dim() > 2 and self.raw_out.shape[1] > 1:
            h = self.raw_out
            extra = extra + self.beta * (h[:, 1:] - h[:, :-1]).float().pow(2).mean()
        self.learn.loss_grad = self.learn.loss_grad + extra
