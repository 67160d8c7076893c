"""Step control: short epochs to try a pipeline in seconds, a cap on the steps of a fit, and validation every N steps.

- `ShortEpochCallback` (fastai's name): train (and validate) only the first ``pct`` of each epoch.
- `StepLimitCallback` (``fit(..., max_steps=N)``): stop after N training steps; schedules span those N steps.
- `ValidateEveryCallback` (``fit(..., validate_every=N)``): the loop's epoch becomes N training steps of a
  stream that continues across them (`learnkit.core.steps.StepsLoader`), so validation, the table's rows, the
  trackers (`EarlyStoppingCallback`'s patience, `SaveModelCallback`) and epoch checkpoints all work every N
  steps. ``n_epoch`` data epochs become ``ceil(n_epoch * len(train) / N)`` rounds of N steps. Under DDP the
  stream is each rank's shard (`DistributedTrainer.steps_loader`; ``len(train)`` is then a shard's length):
  every rank takes N steps per round, all ranks validate together on the whole validation set (gathered as in
  a per-epoch fit), and the recorder and trackers see the same values on every rank.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from ..callback import Callback, CancelTrainException, CancelValidException
from ..steps import StepsLoader
from .profiler import ProfilerCallback, env_profiler
from ..validation import check_int

__all__ = ["ShortEpochCallback", "StepLimitCallback", "ValidateEveryCallback", "step_callbacks"]


def step_callbacks(cbs: Callback | Sequence[Callback] | None, max_steps: int | None,
                   validate_every: int | None) -> list[Callback]:
    """``cbs`` plus the callbacks of ``fit(..., max_steps=, validate_every=)`` (and a printing `ProfilerCallback`
    when ``LEARNKIT_PROFILE=1`` is set).

    >>> [type(cb).__name__ for cb in step_callbacks(None, max_steps=100, validate_every=20)]
    ['StepLimitCallback', 'ValidateEveryCallback']
    """
    out = [] if cbs is None else ([cbs] if isinstance(cbs, Callback) else list(cbs))
    if max_steps is not None:
        out.append(StepLimitCallback(max_steps))
    if validate_every is not None:
        out.append(ValidateEveryCallback(validate_every))
    if not any(isinstance(cb, ProfilerCallback) for cb in out):
        out += env_profiler()
    return out


class ShortEpochCallback(Callback):
    """Stop each training phase after ``pct`` of its batches, and each validation phase too if ``short_valid``.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(64, 2), torch.randn(64, 1), bs=4)  # 16 batches
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.fit(1, cbs=ShortEpochCallback(pct=0.25))
    >>> len(learn.recorder.losses)  # 4 of the 16 training batches
    4
    """

    order = -5  # stops a phase before the batch past ``pct`` is computed

    def __init__(self, pct: float = 0.01, short_valid: bool = True):
        if not 0 < pct <= 1:
            raise ValueError(f"pct is the fraction of each epoch to run, in (0, 1]; got {pct!r}")
        self.pct, self.short_valid = pct, short_valid

    def before_batch(self):
        learn = self.learn
        if learn.iter < max(1, math.ceil(self.pct * learn.n_iter)):
            return
        if learn.training:
            raise CancelTrainException()
        if self.short_valid:
            raise CancelValidException()


class StepLimitCallback(Callback):
    """Stop the fit after ``max_steps`` training batches (``fit(..., max_steps=...)`` adds it). Schedules
    (`ParamScheduler`, one-cycle) run over ``min(max_steps, n_epoch * len(train))`` steps; the epoch in which
    the limit falls ends with its validation.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(32, 2), torch.randn(32, 1), bs=4)  # 8 batches
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.fit_one_cycle(10, 1e-2, cbs=StepLimitCallback(12))  # or learn.fit(10, max_steps=12)
    >>> len(learn.recorder.losses), len(learn.recorder.values), f"{learn.recorder.lrs[-1]:.0e}"  # annealed by step 12
    (12, 2, '1e-07')
    """

    order = -20  # before the schedules read the number of steps

    def __init__(self, max_steps: int):
        check_int("max_steps", max_steps, what="(training steps)")
        self.max_steps = max_steps

    def before_fit(self):
        learn = self.learn
        n_iter = max(1, len(learn.dls.train))
        learn.n_epoch = min(learn.n_epoch, -(-self.max_steps // n_iter))

    def total_steps(self, n_epoch: int, n_iter: int) -> int:
        """The steps a schedule spans: ``min(max_steps, n_epoch * n_iter)``."""
        return min(self.max_steps, n_epoch * n_iter)

    def before_batch(self):
        if self.learn.training and self.learn.epoch * self.learn.n_iter + self.learn.iter >= self.max_steps:
            raise CancelTrainException()  # this epoch still validates; it is the last (n_epoch was cut to it)


class ValidateEveryCallback(Callback):
    """Validate every ``n_steps`` training steps (``fit(..., validate_every=n_steps)`` adds it), in one process or
    under DDP: see the module docstring.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(40, 2), torch.randn(40, 1), bs=4, shuffle=True)  # 10 batches
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.fit(2, cbs=ValidateEveryCallback(4))  # 20 steps: 5 rounds of 4, each ending with validation
    >>> len(learn.recorder.values), len(learn.recorder.losses)
    (5, 20)
    """

    order = -40  # first: everything else sees epochs of n_steps

    def __init__(self, n_steps: int):
        check_int("n_steps", n_steps, what="(training steps between validations)")
        self.n_steps = n_steps
        self._saved = None

    def before_fit(self):
        learn = self.learn
        trainer = getattr(learn, "distributed_trainer", None)
        self._saved = (learn.dls[0], learn.n_epoch)  # the loader itself (dls.train is its DeviceLoader view)
        steps = (StepsLoader(learn.dls[0], self.n_steps) if trainer is None
                 else trainer.steps_loader(learn.dls[0], self.n_steps))  # DDP: this rank's shard
        learn.dls.train = steps
        learn.n_epoch = -(-learn.n_epoch * len(steps.dl) // self.n_steps)

    def _restore(self) -> None:
        if self._saved is not None:
            self.learn.dls.train, _ = self._saved
            self._saved = None

    def after_fit(self):
        self._restore()

    def after_fit_exception(self):
        self._restore()

