"""The learning-rate finder: `LRFinder` (what `Learner.lr_find` runs) and its suggestion functions.

>>> lrs = SuggestedLRs(valley=1e-3, minimum=2e-4, steep=3e-3)
>>> lrs._fields
('valley', 'minimum', 'steep')
"""
from __future__ import annotations

import copy
import math
from collections import namedtuple
from collections.abc import Callable, Sequence

import numpy as np

from ..callback import Callback, CancelFitException, CancelValidException
from ..process_group import any_rank
from ..validation import check_int, check_number

__all__ = ["LRFinder", "SuggestedLRs", "minimum", "steep", "valley", "slide"]


SuggestedLRs = namedtuple("SuggestedLRs", ["valley", "minimum", "steep"])  # the default fields; see LRFinder.suggest
SuggestedLRs.__doc__ = """Suggested learning rates, one field per suggestion function (what `Learner.lr_find` returns;
these are the fields of ``suggest_funcs=(valley, minimum, steep)``).

>>> lrs = SuggestedLRs(valley=1e-3, minimum=2e-4, steep=3e-3)
>>> lrs.valley, lrs._fields
(0.001, ('valley', 'minimum', 'steep'))
"""


# --- learning-rate suggestions: f(lrs, losses) -> (lr, index of the point to mark) ---------------------------
def minimum(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """A tenth of the learning rate at the lowest loss.

    >>> import numpy as np
    >>> lrs, losses = np.logspace(-5, 0, 6), np.array([1.0, 0.9, 0.6, 0.3, 0.5, 2.0])  # what lr_find records
    >>> lr, i = minimum(lrs, losses)  # learn.lr_find(suggest_funcs=(minimum, steep)) uses it
    >>> f"{lr:.0e}", i  # a tenth of 1e-2, where the loss is lowest
    ('1e-03', 3)
    """
    i = int(np.argmin(losses))
    return float(lrs[i] / 10), i


def steep(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """The learning rate where the loss falls fastest (steepest negative slope against log lr).

    >>> import numpy as np
    >>> lrs, losses = np.logspace(-5, 0, 6), np.array([1.0, 0.9, 0.6, 0.3, 0.5, 2.0])  # what lr_find records
    >>> lr, i = steep(lrs, losses)
    >>> f"{lr:.0e}", i
    ('1e-03', 2)
    """
    i = int(np.argmin(np.gradient(losses, np.log(lrs))))
    return float(lrs[i]), i


def valley(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, int]:
    """Two thirds down the longest descending stretch of the loss curve.

    >>> import numpy as np
    >>> lrs, losses = np.logspace(-5, 0, 6), np.array([1.0, 0.9, 0.6, 0.3, 0.5, 2.0])  # what lr_find records
    >>> lr, i = valley(lrs, losses)  # the default of learn.lr_find()
    >>> f"{lr:.0e}", i  # two thirds down the descent from 1e-5 to 1e-2
    ('1e-03', 2)
    """
    i = _valley_index(losses)
    return float(lrs[i]), i


def slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005,
          adjust_value: float = 1.0) -> tuple[float, int]:
    """Walk back from the lowest loss while the loss ``lr_diff`` points earlier is not clearly higher
    (relative slope above ``-thresh``): the last learning rate of the descent before it flattens.

    >>> import numpy as np
    >>> lrs, losses = np.logspace(-5, 0, 6), np.array([1.0, 0.9, 0.6, 0.3, 0.5, 2.0])  # what lr_find records
    >>> lr, i = slide(lrs, losses, lr_diff=2)  # lr_diff: how many points back to compare (15 for a real curve)
    >>> f"{lr:.0e}", i
    ('1e-03', 2)
    """
    gradients = np.gradient(losses, np.log(lrs))
    end = int(np.argmin(losses))
    i = end
    while i > lr_diff and gradients[i - lr_diff: i].mean() < -thresh * abs(losses[i]):
        i -= 1
    i = max(0, min(i, end))
    return float(lrs[i] * adjust_value), i


class LRFinder(Callback):
    """Grow the learning rate exponentially from ``start_lr`` to ``end_lr`` over ``num_it`` batches,
    stop when the loss diverges, and restore the model and optimizer afterwards.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(64, 2), torch.randn(64, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> weights = learn.model.weight.detach().clone()
    >>> finder = LRFinder(start_lr=1e-4, end_lr=1.0, num_it=10, stop_div=False)
    >>> learn.fit(1, cbs=finder)  # what learn.lr_find(1e-4, 1.0, num_it=10) runs
    >>> len(learn.recorder.lrs), torch.equal(learn.model.weight, weights)  # 10 steps recorded, weights restored
    (10, True)
    >>> finder.suggest(("valley", "steep"))
    SuggestedLRs(valley=..., steep=...)
    """

    order = 55
    run_valid = False

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True):
        check_number("start_lr", start_lr)
        check_number("end_lr", end_lr)  # finite numbers: an infinite end_lr would train on an infinite rate
        if not 0 < start_lr < end_lr:
            raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
        check_int("num_it", num_it, low=1)
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div

    def before_fit(self):
        self.model_state = copy.deepcopy(self.learn.model.state_dict())
        self.opt_state = copy.deepcopy(self.learn.opt.state_dict())
        self.scaler_state = copy.deepcopy(self.learn.scaler.state_dict())  # fp16: the loss scale it grows/cuts
        self.was_training = self.learn.model.training
        self.best, self.count = float("inf"), 0
        self.restored = False

    def before_batch(self):
        lr = self.start_lr * (self.end_lr / self.start_lr) ** (self.count / max(1, self.num_it - 1))
        for pg in self.learn.opt.param_groups:
            pg["lr"] = lr

    def after_batch(self):
        self.count += 1
        loss = self.learn.recorder.smooth_loss
        if math.isfinite(loss) and loss < self.best:
            self.best = loss
        stop = self.count >= self.num_it or (self.stop_div and (not math.isfinite(loss) or loss > 4 * self.best))
        if getattr(self.learn, "distributed_trainer", None) is not None:
            stop = any_rank(stop)  # every rank stops at the same batch (each sees its own loss)
        if stop:
            raise CancelFitException()

    def before_validate(self):
        raise CancelValidException()

    def after_fit(self):
        if getattr(self.learn, "distributed_trainer", None) is not None:
            self.learn.recorder.mean_losses_over_ranks()  # the same curve, so the same suggestions, on every rank
        self.restore()

    def restore(self) -> None:
        """Put back the weights, the optimizer (learning rates included), the gradient scaler and the
        train/eval mode as they were before ``lr_find``. Idempotent; `Learner.lr_find` also calls it in a
        ``finally`` so that an interrupted search (Ctrl-C) restores them too."""
        if getattr(self, "restored", True):
            return
        self.restored = True
        self.learn.opt.zero_grad(set_to_none=True)
        self.learn.model.load_state_dict(self.model_state)
        self.learn.opt.load_state_dict(self.opt_state)
        if self.scaler_state:  # a disabled scaler has no state
            self.learn.scaler.load_state_dict(self.scaler_state)
        self.learn.model.train(self.was_training)

    def suggest(self, funcs: Sequence[str | Callable] = ("valley",)) -> tuple:
        """Suggested learning rates from the recorded curve, one field per function in ``funcs``: fastai's
        `minimum`, `steep`, `valley`, `slide` (or their names), or any ``f(lrs, losses) -> (lr, index)``.
        ``lr_min, lr_steep = learn.lr_find(suggest_funcs=(minimum, steep))`` unpacks two."""
        lrs = np.array(self.learn.recorder.lrs, dtype=float)
        losses = np.array(self.learn.recorder.smooth_losses, dtype=float)
        keep = np.isfinite(losses)
        lrs, losses = lrs[keep], losses[keep]
        if len(lrs) < 3:
            raise RuntimeError("lr_find recorded fewer than 3 batches: the training set is too small or the loss "
                               "diverged at once; lower start_lr or add data")
        named = {"minimum": minimum, "steep": steep, "valley": valley, "slide": slide}
        fs = []
        for f in funcs:
            if isinstance(f, str):
                if f not in named:
                    raise ValueError(f"unknown lr suggestion {f!r}; use one of {sorted(named)} or a function")
                f = named[f]
            if not callable(f):
                raise TypeError(f"suggest_funcs takes functions f(lrs, losses) -> (lr, index) or names, got {f!r}")
            fs.append(f)
        fields = [getattr(f, "__name__", f"suggestion{i}") for i, f in enumerate(fs)]
        self.suggestion_points = []
        values = []
        for f in fs:
            lr, idx = f(lrs, losses)
            values.append(float(lr))
            self.suggestion_points.append((float(lrs[idx]), float(losses[idx])))
        kind = SuggestedLRs if tuple(fields) == SuggestedLRs._fields else namedtuple("SuggestedLRs", fields)
        return kind(*values)


def _valley_index(losses: np.ndarray) -> int:
    """Index two thirds along the longest decreasing subsequence of the losses."""
    n = len(losses)
    length, prev = [1] * n, [-1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and length[j] + 1 > length[i]:
                length[i], prev[i] = length[j] + 1, j
    end = int(np.argmax(length))
    start = end
    while prev[start] != -1:
        start = prev[start]
    return start + (end - start) * 2 // 3
