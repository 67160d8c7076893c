"""Callbacks that change how a step is taken: gradient accumulation and gradient clipping."""
from __future__ import annotations

import torch

from ..callback import Callback, CancelStepException

__all__ = ["GradientAccumulation", "GradientClip"]


class GradientAccumulation(Callback):
    """Step the optimizer once every ``n_acc`` items (not batches), summing gradients in between, so
    ``bs=16, n_acc=64`` trains like ``bs=64``. The loss is scaled so that the sum equals the mean."""

    order = 20
    run_valid = False

    def __init__(self, n_acc: int = 32):
        self.n_acc = n_acc

    def before_fit(self):
        self.count = 0

    def before_backward(self):
        bs = self.learn.yb[0].shape[0]
        self.learn.loss_grad = self.learn.loss_grad * (bs / self.n_acc)

    def before_step(self):
        self.count += self.learn.yb[0].shape[0]
        last = self.learn.iter == self.learn.n_iter - 1
        if self.count < self.n_acc and not last:
            raise CancelStepException()
        self.count = 0


class GradientClip(Callback):
    """Clip the global gradient norm to ``max_norm`` before each step (after unscaling fp16 gradients)."""

    order = 30
    run_valid = False

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0):
        self.max_norm, self.norm_type = max_norm, norm_type

    def before_step(self):
        self.learn.scaler.unscale_(self.learn.opt)
        torch.nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.max_norm, self.norm_type)
