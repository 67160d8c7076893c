"""Callbacks that change how a step is taken: gradient accumulation and gradient clipping."""
from __future__ import annotations

import torch

from ..callback import Callback, CancelStepException

__all__ = ["GradientAccumulation", "GradientClip"]


class GradientAccumulation(Callback):
    """Step the optimizer once every ``n_acc`` items (not batches), summing gradients in between, so
    ``bs=16, n_acc=64`` trains like ``bs=64``. The loss is scaled so that the sum equals the mean.

    Under DDP the micro-batches before the last of each step run inside ``DistributedDataParallel.no_sync()``:
    gradients are all-reduced once per optimizer step, not once per micro-batch.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(16, 2), torch.randn(16, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.fit(1, cbs=GradientAccumulation(n_acc=8))  # batches of 4 items, one optimizer step per 8 items
    >>> int(learn.opt.state[learn.model.weight]["step"])  # 4 batches, 2 steps
    2
    """

    order = 20
    run_valid = False

    def __init__(self, n_acc: int = 32):
        self.n_acc = n_acc

    def before_fit(self):
        self.count = 0
        self._no_sync = None

    def _steps_now(self, bs: int) -> bool:
        return self.count + bs >= self.n_acc or self.learn.iter == self.learn.n_iter - 1

    def before_batch(self):
        ddp = self.learn.ddp_model
        if ddp is None or not self.learn.yb or not hasattr(ddp, "no_sync"):
            return
        if not self._steps_now(self.learn.yb[0].shape[0]):  # no_sync must wrap the forward pass too
            self._no_sync = ddp.no_sync()
            self._no_sync.__enter__()

    def _end_no_sync(self) -> None:
        if self._no_sync is not None:
            ctx, self._no_sync = self._no_sync, None
            ctx.__exit__(None, None, None)

    def after_batch(self):
        self._end_no_sync()

    def after_cancel_batch(self):
        self._end_no_sync()

    def after_fit_exception(self):
        self._end_no_sync()

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
    """Clip the global gradient norm to ``max_norm`` before each step (after unscaling fp16 gradients).

    >>> from torch.nn.utils import parameters_to_vector
    >>> dl = TensorLoader(torch.randn(8, 2), torch.full((8, 1), 100.0), bs=4)  # far-off targets: huge gradients
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 opt_func=torch.optim.SGD, lr=1.0, progress=False)
    >>> before = parameters_to_vector(learn.model.parameters()).detach()
    >>> learn.fit(1, cbs=GradientClip(max_norm=0.1))
    >>> moved = parameters_to_vector(learn.model.parameters()).detach() - before
    >>> float(moved.norm()) <= 0.2 + 1e-6  # 2 SGD steps (lr 1.0) of gradients clipped to a norm of 0.1
    True
    """

    order = 30
    run_valid = False

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0):
        self.max_norm, self.norm_type = max_norm, norm_type

    def before_step(self):
        self.learn.scaler.unscale_(self.learn.opt)
        torch.nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.max_norm, self.norm_type)
