"""Loss functions that also know how to turn model outputs into predictions.

Each loss here has ``activation(out)`` (probabilities) and ``decodes(out)`` (class indices or values),
which `Learner.get_preds` and `Learner.predict` use. Any callable ``loss(pred, *targets)`` works as a
loss; these wrappers only add the decoding and flatten the inputs so that the same loss serves
classification, segmentation (``[B, C, H, W]``) and sequence outputs.

>>> import torch
>>> loss = CrossEntropyLossFlat()
>>> float(loss(torch.tensor([[0., 0.]]), torch.tensor([1]))) == float(torch.log(torch.tensor(2.)))
True
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from .registry import register_loss

__all__ = ["CrossEntropyLossFlat", "BCEWithLogitsLossFlat", "MSELossFlat", "L1LossFlat", "LabelSmoothingCrossEntropy",
           "LabelSmoothingCrossEntropyFlat"]  # loss_activation, loss_decodes: for learnkit's own modules


def _identity(out: torch.Tensor) -> torch.Tensor:
    return out


def _softmax_classes(out: torch.Tensor) -> torch.Tensor:
    return out.float().softmax(dim=1)


def _argmax_classes(out: torch.Tensor) -> torch.Tensor:
    return out.argmax(dim=1)


def _sigmoid(out: torch.Tensor) -> torch.Tensor:
    return out.float().sigmoid()


def _over_half(out: torch.Tensor) -> torch.Tensor:
    return out > 0.5


def _torch_loss_kind(loss_func: Any) -> str | None:
    """``"ce"`` for torch's cross-entropy, ``"bce"`` for its binary cross-entropy on logits, else ``None``."""
    if loss_func is F.cross_entropy or isinstance(loss_func, nn.CrossEntropyLoss):
        return "ce"
    if loss_func is F.binary_cross_entropy_with_logits or isinstance(loss_func, nn.BCEWithLogitsLoss):
        return "bce"
    return None


def loss_activation(loss_func: Any, default: Callable[[torch.Tensor], torch.Tensor] | None = _identity
                    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """What turns a model's output into predictions under ``loss_func`` (`Learner.get_preds`, ``predict``, ONNX):
    the loss' own ``activation``; for torch's own losses, as fastbook passes them (``loss_func=F.cross_entropy``,
    ``nn.CrossEntropyLoss()``), a softmax over the classes (dim 1), and a sigmoid for
    ``F.binary_cross_entropy_with_logits`` / ``nn.BCEWithLogitsLoss``; otherwise ``default`` (the identity).

    >>> loss_activation(F.cross_entropy)(torch.zeros(1, 2)).tolist(), loss_activation(F.mse_loss)(torch.ones(1)).tolist()
    ([[0.5, 0.5]], [1.0])
    """
    own = getattr(loss_func, "activation", None)
    if own is not None:
        return own
    return {"ce": _softmax_classes, "bce": _sigmoid}.get(_torch_loss_kind(loss_func), default)


def loss_decodes(loss_func: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """What turns `loss_activation`'s predictions into decoded ones: the loss' own ``decodes``; the class index
    (argmax over dim 1) for torch's cross-entropy, ``> 0.5`` for its binary cross-entropy; else the identity.

    >>> loss_decodes(nn.CrossEntropyLoss())(torch.tensor([[0.2, 0.8]])).tolist()
    [1]
    """
    own = getattr(loss_func, "decodes", None)
    if own is not None:
        return own
    return {"ce": _argmax_classes, "bce": _over_half}.get(_torch_loss_kind(loss_func), _identity)


def _per_item(t: torch.Tensor) -> int:
    """Values per item (everything after the batch axis)."""
    return t[0].numel() if t.dim() > 1 and len(t) else 1


def _check_same_size(pred: torch.Tensor, targ: torch.Tensor, loss: str, what: str) -> None:
    """A free shape check (no device sync): the model's output must have one value per target value."""
    same_batch = not (pred.dim() and targ.dim()) or pred.shape[0] == targ.shape[0]
    if pred.numel() == targ.numel() and same_batch:
        return
    if not same_batch:
        raise ValueError(f"{loss}: the model returned {pred.shape[0]} items but the batch has {targ.shape[0]} "
                         f"targets (output shape {tuple(pred.shape)}, targets {tuple(targ.shape)})")
    raise ValueError(f"{loss}: the model outputs {_per_item(pred)} values per item but the targets have "
                     f"{_per_item(targ)} {what} per item (output shape {tuple(pred.shape)}, targets "
                     f"{tuple(targ.shape)}): set n_out={_per_item(targ)} on the model (its last layer)")


@register_loss
class CrossEntropyLossFlat(nn.Module):
    """Cross-entropy over the class axis (``axis=1``) for any number of trailing dimensions.

    >>> loss = CrossEntropyLossFlat()
    >>> out = torch.zeros(2, 3, 4, 4)  # segmentation: [batch, classes, height, width] scores
    >>> round(float(loss(out, torch.zeros(2, 4, 4, dtype=torch.long))), 4)  # log(3): uniform over 3 classes
    1.0986
    >>> out = torch.tensor([[0.0, 2.0, -1.0]])
    >>> loss.decodes(loss.activation(out)), loss.activation(out).round(decimals=2)  # class index, probabilities
    (tensor([1]), tensor([[0.1100, 0.8400, 0.0400]]))
    """

    def __init__(self, weight: torch.Tensor | None = None, ignore_index: int = -100, label_smoothing: float = 0.0,
                 axis: int = 1):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index, self.label_smoothing, self.axis = ignore_index, label_smoothing, axis

    def export_config(self) -> dict:
        if self.weight is not None:
            raise ValueError("class weights are not exported; rebuild the loss with its weights after load_learner")
        return {"ignore_index": self.ignore_index, "label_smoothing": self.label_smoothing, "axis": self.axis}

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        if self.axis != 1:
            pred = pred.movedim(self.axis, 1)
        elif (pred.dim() == targ.dim() + 1 > 2 and pred.shape[:-1] == targ.shape
              and pred.shape[:1] + pred.shape[2:] != targ.shape):
            pred = pred.movedim(-1, 1)  # scores last ([B, L, V] for [B, L] tokens: a language model; fastai's axis=-1)
        name = type(self).__name__
        if pred.dim() != targ.dim() + 1 or pred.shape[:1] + pred.shape[2:] != targ.shape:
            hint = (f"the model outputs {pred.shape[1]} values per item: one per class" if pred.dim() > 1 else
                    "the model outputs one value per item")
            raise ValueError(f"{name}: output shape {tuple(pred.shape)} does not fit target shape {tuple(targ.shape)} "
                             f"({hint}; the targets must be class indices, shape {(pred.shape[0],) + tuple(pred.shape[2:])}"
                             "); for one-hot or multi-label targets use BCEWithLogitsLossFlat, for numbers MSELossFlat")
        try:
            return F.cross_entropy(pred.float(), targ.long(), weight=self.weight, ignore_index=self.ignore_index,
                                   label_smoothing=self.label_smoothing)
        except (IndexError, RuntimeError) as e:  # only here (an error already) do we read the targets back
            valid = targ[targ != self.ignore_index]
            if not valid.numel() or not (int(valid.max()) >= pred.shape[1] or int(valid.min()) < 0):
                raise
            n_cls = int(valid.max()) + 1
            raise ValueError(f"{name}: the model outputs {pred.shape[1]} values per item but the targets have "
                             f"{n_cls} classes (max target {n_cls - 1}, min {int(valid.min())}): set n_out={n_cls} "
                             "on the model (its last layer), or check the labels") from e

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().softmax(dim=self.axis)

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(dim=self.axis)


@register_loss
class LabelSmoothingCrossEntropy(CrossEntropyLossFlat):
    """Cross-entropy against targets smoothed towards uniform: ``(1 - eps) * nll + eps * mean over classes of
    -log p`` (fastai's name; torch's ``label_smoothing`` underneath). Flat over trailing dimensions, so
    ``LabelSmoothingCrossEntropyFlat`` is the same class.

    >>> import torch
    >>> out, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    >>> float(LabelSmoothingCrossEntropy(eps=0.0)(out, y)) == float(CrossEntropyLossFlat()(out, y))
    True
    """

    def __init__(self, eps: float = 0.1, weight: torch.Tensor | None = None, axis: int = 1):
        if not 0 <= eps < 1:
            raise ValueError(f"eps (the smoothing) must be in [0, 1), got {eps!r}")
        super().__init__(weight=weight, label_smoothing=eps, axis=axis)
        self.eps = eps

    def export_config(self) -> dict:
        if self.weight is not None:
            raise ValueError("class weights are not exported; rebuild the loss with its weights after load_learner")
        return {"eps": self.eps, "axis": self.axis}


LabelSmoothingCrossEntropyFlat = LabelSmoothingCrossEntropy


@register_loss
class BCEWithLogitsLossFlat(nn.Module):
    """Binary cross-entropy on logits (multi-label); ``decodes`` thresholds the sigmoid at ``thresh``.

    >>> loss = BCEWithLogitsLossFlat(thresh=0.5)
    >>> out, targ = torch.tensor([[4.0, -4.0, 1.0]]), torch.tensor([[1.0, 0.0, 0.0]])  # 3 labels per item
    >>> round(float(loss(out, targ)), 4)
    0.4499
    >>> loss.decodes(loss.activation(out))  # the labels whose probability passes thresh
    tensor([[ True, False,  True]])
    """

    def __init__(self, pos_weight: torch.Tensor | None = None, thresh: float = 0.5):
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)
        self.thresh = thresh

    def export_config(self) -> dict:
        return {"thresh": self.thresh}

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        _check_same_size(pred, targ, type(self).__name__, "labels")
        return F.binary_cross_entropy_with_logits(pred.float(), targ.float().reshape(pred.shape),
                                                  pos_weight=self.pos_weight)

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().sigmoid()

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        return out > self.thresh


@register_loss
class MSELossFlat(nn.Module):
    """Mean squared error with the prediction reshaped to the target's shape (a different number of values
    raises a `ValueError` instead of broadcasting).

    >>> import torch
    >>> float(MSELossFlat()(torch.tensor([[1.], [3.]]), torch.tensor([1., 1.])))
    2.0
    """

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        _check_same_size(pred, targ, type(self).__name__, "targets")
        return F.mse_loss(pred.float().reshape(targ.shape), targ.float())

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        return out

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        return out


@register_loss
class L1LossFlat(MSELossFlat):
    """Mean absolute error with the prediction reshaped to the target's shape.

    >>> float(L1LossFlat()(torch.tensor([[1.0], [3.0]]), torch.tensor([1.0, 1.0])))  # [B, 1] outputs, [B] targets
    1.0
    """

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        _check_same_size(pred, targ, type(self).__name__, "targets")
        return F.l1_loss(pred.float().reshape(targ.shape), targ.float())
