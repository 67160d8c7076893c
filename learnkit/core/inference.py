"""Inference with a `Learner`: ``get_preds`` over a loader, ``predict`` on one item, ``validate`` (the loss and
metrics over a loader). `Learner` gets them from `InferenceMixin`; task learners add ``tta`` and
``show_results`` on top.

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> ds = TensorDataset(torch.randn(10, 2), torch.randint(0, 3, (10,)))
>>> learn = Learner(DataLoaders.from_dsets(ds, ds, bs=4, device="cpu"), torch.nn.Linear(2, 3),
...                 loss_func=CrossEntropyLossFlat(), metrics=accuracy, progress=False)
>>> probs, targs = learn.get_preds()
>>> probs.shape, targs.shape, bool(torch.allclose(probs.sum(1), torch.ones(10)))
(torch.Size([10, 3]), torch.Size([10]), True)
>>> len(learn.validate())  # [valid_loss, accuracy]
2
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from .callback import CancelValidException
from .callbacks.recorder import Recorder
from .device import cat_nested, to_cpu
from .distributed import gather_preds, shard_for_preds
from .sharding import unshuffled
from .data import raw_loader
from .losses import loss_activation, loss_decodes

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["InferenceMixin"]


class InferenceMixin:
    """The inference methods of `Learner`."""

    def get_preds(self: Learner, ds_idx: int = 1, dl: Iterable | None = None, with_input: bool = False,
                  with_loss: bool = False, with_decoded: bool = False, act: Callable | None = None) -> tuple:
        """Predictions over a whole loader: ``(probs, targets[, decoded][, losses][, inputs])``.

        ``probs`` is the loss' activation of the model output (softmax for cross-entropy). The targets
        are ``None`` for loaders without labels (``dls.test_dl(items)``). Under DDP, predictions over the
        ``dls``' own loaders are sharded and gathered (call it on every rank); an explicit ``dl`` runs locally.
        """
        dl = shard_for_preds(self, self.dls[ds_idx]) if dl is None else raw_loader(dl)  # under DDP: this rank's shard
        act = act or loss_activation(self.loss_func)
        preds, targs, inputs, losses = [], [], [], []
        self.model.eval()
        with torch.no_grad(), self.autocast():
            for batch in dl:
                batch = self.dls.prepare_batch(batch, False, self.device)
                xb, yb = tuple(batch[: self.dls.n_inp]), tuple(batch[self.dls.n_inp:])
                out = self.pred_from_output(self.model(*xb))
                preds.append(to_cpu(act(out.float())))
                if yb:
                    targs.append(to_cpu(yb[0]))
                    if with_loss:
                        losses.append(to_cpu(self._item_losses(out, yb)))
                if with_input:
                    inputs.append(to_cpu(xb[0] if len(xb) == 1 else xb))
        probs = gather_preds(dl, torch.cat(preds) if preds else torch.empty(0))
        res = [probs, gather_preds(dl, torch.cat(targs) if targs else None)]
        if with_decoded:
            dec = loss_decodes(self.loss_func)
            res.append(dec(probs))
        if with_loss:
            res.append(gather_preds(dl, torch.cat(losses) if losses else None))
        if with_input:
            res.append(gather_preds(dl, cat_nested(inputs)))
        return tuple(res)

    def pred_from_output(self: Learner, out: Any) -> Any:
        """The prediction in a model's output, for `get_preds`: the output itself here. A learner whose models
        return more than their scores (text's ``(logits, raw, dropped)``) overrides it.

        >>> learn = Learner(DataLoaders.from_dsets([(torch.zeros(1), 0)], bs=1, device="cpu"), torch.nn.Linear(1, 2),
        ...                 loss_func=CrossEntropyLossFlat(), progress=False)
        >>> learn.pred_from_output(torch.ones(2)).tolist()
        [1.0, 1.0]
        """
        return out

    def _item_losses(self: Learner, out: torch.Tensor, yb: tuple) -> torch.Tensor:
        return torch.stack([self.loss_func(out[i: i + 1], *(y[i: i + 1] for y in yb)).float()
                            for i in range(out.shape[0])])

    def predict(self: Learner, item: Any) -> tuple:
        """Predict one item: ``(decoded, decoded_index_or_value, probabilities)``."""
        dl = self.dls.test_dl([item])
        probs, _, dec = self.get_preds(dl=dl, with_decoded=True)
        return self.dls.decode_predict(item, dec[0], probs[0])

    def validate(self: Learner, ds_idx: int = 1, dl: Iterable | None = None) -> list[float]:
        """``[valid_loss, *metrics]`` over a loader (the validation set by default), through the loop's
        validation phase with only the `Recorder` attached."""
        dl = unshuffled(self.dls[ds_idx]) if dl is None else raw_loader(dl)  # every item once, in order (on this rank)
        rec = self.recorder
        with self.removed_cbs([cb for cb in self.cbs if not isinstance(cb, Recorder)]):
            self._set_phase(dl, training=False)
            self._with_events(self._do_validate, "validate", CancelValidException)
        return rec.valid_summary()
