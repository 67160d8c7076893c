"""`MixUp` and `CutMix`: train on blends of two items, with the loss blended the same way.

One mixing weight ``lam`` per batch, drawn from ``Beta(alpha, alpha)`` (the paper's reference implementation
and timm's default ``mode='batch'``): each item is mixed with another item of the same batch (a random
permutation). For class-index targets the loss becomes ``lam * loss(pred, y) + (1 - lam) * loss(pred, y[perm])``;
float targets (multi-label, regression) are mixed directly. Only training batches are mixed; validation and
`Learner.get_preds` see the real items.

>>> cb = MixUp(alpha=0.4)
>>> cb.alpha
0.4
"""
from __future__ import annotations

import torch

from ..callback import Callback

__all__ = ["MixUp", "CutMix"]


class MixHandler(Callback):
    """Shared machinery: draw ``lam`` and a permutation, mix the targets or the loss (subclasses mix inputs)."""

    order = 20  # after the schedulers (10), before the Recorder reads the loss (50)
    run_valid = False
    changes_inputs = True  # what a cache of the inputs' features must know (vision's FrozenFeatureCache)

    def __init__(self, alpha: float):
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (the Beta distribution's parameter), got {alpha!r}")
        self.alpha = float(alpha)
        self.distrib = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))

    def _draw(self) -> None:
        lam = float(self.distrib.sample())  # CPU draw from torch's global RNG: no device sync, restored on resume
        self.lam = max(lam, 1 - lam)
        bs = self.learn.xb[0].shape[0]
        self.perm = torch.randperm(bs).to(self.learn.xb[0].device, non_blocking=True)
        self.mix_targets = bool(self.learn.yb) and self.learn.yb[0].is_floating_point()
        if self.mix_targets:
            self.learn.yb = tuple(torch.lerp(y[self.perm], y, self.lam) for y in self.learn.yb)

    def after_loss(self) -> None:
        if self.mix_targets or not self.learn.yb:
            return
        lf, pred = self.learn.loss_func, self.learn.pred
        other = tuple(y[self.perm] for y in self.learn.yb)
        loss = self.lam * lf(pred, *self.learn.yb) + (1 - self.lam) * lf(pred, *other)
        self.learn.loss_grad, self.learn.loss = loss, loss.detach()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha})"


class MixUp(MixHandler):
    """MixUp (Zhang et al., 2018): ``x = lam * x + (1 - lam) * x[perm]``.

    Args:
        alpha: the Beta distribution's parameter; small values keep most items close to one original.

    >>> dl = TensorLoader(torch.randn(8, 2), torch.randint(0, 2, (8,)), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(),
    ...                 metrics=accuracy, progress=False)
    >>> mix = MixUp(alpha=0.4)
    >>> learn.fit(1, cbs=mix)  # training batches are blends; validation sees the real items
    >>> 0.5 <= mix.lam <= 1, mix.perm.shape  # the last batch's weight of its own items, and its partners
    (True, torch.Size([4]))
    """

    def __init__(self, alpha: float = 0.4):
        super().__init__(alpha)

    def before_batch(self) -> None:
        self._draw()
        xb = self.learn.xb
        self.learn.xb = (torch.lerp(xb[0][self.perm], xb[0], self.lam), *xb[1:])


class CutMix(MixHandler):
    """CutMix (Yun et al., 2019): paste a random box of ``x[perm]`` into each image ``[B, C, H, W]``; ``lam``
    becomes the share of each image that stays its own.

    Args:
        alpha: the Beta distribution's parameter for the box area.

    >>> images = torch.rand(8, 3, 4, 4)  # [batch, channels, height, width]
    >>> dl = TensorLoader(images, torch.randint(0, 2, (8,)), bs=4)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), model, loss_func=CrossEntropyLossFlat(), progress=False)
    >>> cut = CutMix(alpha=1.0)
    >>> learn.fit(1, cbs=cut)
    >>> 0 <= cut.lam <= 1  # the share of the last batch's images that stayed their own
    True
    """

    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha)

    def before_batch(self) -> None:
        x = self.learn.xb[0]
        if x.ndim != 4:
            raise ValueError(f"CutMix mixes images [batch, channels, height, width], got inputs of shape {list(x.shape)}; "
                             "use MixUp for other inputs")
        lam = float(self.distrib.sample())
        h, w = x.shape[-2:]
        cut = (1 - lam) ** 0.5
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
        self.perm = torch.randperm(x.shape[0]).to(x.device, non_blocking=True)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[self.perm][:, :, y0:y1, x0:x1]
        self.learn.xb = (x, *self.learn.xb[1:])
        self.lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the exact share left after clipping the box
        self.mix_targets = bool(self.learn.yb) and self.learn.yb[0].is_floating_point()
        if self.mix_targets:
            self.learn.yb = tuple(torch.lerp(y[self.perm], y, self.lam) for y in self.learn.yb)
