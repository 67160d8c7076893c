"""`Learner.fine_tune`: transfer learning in two phases, the head first with the body frozen, then everything.

The frozen phase (`FineTuneMixin.fit_frozen_head`) is where small data sets used to fail: a new head gets as
many optimizer steps as there are batches. With a task's `FrozenFeatureCache` it becomes a `HeadFit`: the
body runs once over the training images, the output bias starts at the targets' prior, and the output layer
is solved on the cached features (or the head gets many cheap passes over them). The unfrozen phase then
trains the body with discriminative learning rates, holding a solved output layer fixed
(`HeadFit.hold_output`). Each phase warns when it was too short for the data (`SmallDataWarning`).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from contextlib import nullcontext

from .callback import Callback
from .feature_cache import FrozenFeatureCache
from .headfit import HeadFit, SmallDataWarning, hold_output_layer, phase_warnings
from .validation import check_fine_tune

__all__ = ["FineTuneMixin"]


class FineTuneMixin:
    """``fine_tune`` and its frozen phase, for `Learner` (which provides ``freeze``, ``unfreeze``,
    ``fit_one_cycle``, ``model``, ``cbs``, ``dls`` and ``recorder``)."""

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, wd: float | None = None,
                  cbs: Callback | Sequence[Callback] | None = None, head_fit: HeadFit | None = None) -> None:
        """Transfer learning: train the head with the body frozen for ``freeze_epochs``, then unfreeze and
        train everything for ``epochs`` with learning rates from ``base_lr/lr_mult`` (body) to ``base_lr`` (head).
        ``head_fit`` sets how the frozen phase trains the head on cached body features (`HeadFit`: at least
        ``min_steps`` optimizer steps, the L-BFGS solve...; default ``HeadFit()``)."""
        check_fine_tune(epochs, base_lr, freeze_epochs, lr_mult, pct_start, div, wd)
        self.freeze()
        hold = self.fit_frozen_head(freeze_epochs, base_lr, wd=wd, cbs=cbs, plan=head_fit) if freeze_epochs else False
        base_lr /= 2
        self.unfreeze()
        if epochs:
            with hold_output_layer(self.model) if hold else nullcontext():
                self.fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, wd=wd,
                                   cbs=cbs, reset_opt=True)
            self._warn_short_phase("unfrozen", epochs)

    def fit_frozen_head(self, freeze_epochs: int, lr: float, wd: float | None = None,
                        cbs: Callback | Sequence[Callback] | None = None, plan: HeadFit | None = None) -> bool:
        """`fine_tune`'s frozen phase: ``fit_one_cycle(freeze_epochs, slice(lr), pct_start=0.99)`` on the
        head, which a task's `FrozenFeatureCache` turns into a `HeadFit` (the output layer solved on body
        features computed once, or many cheap passes over them; the output bias started at the targets'
        prior); warns when the phase was too short. Returns whether the plan holds the solved output layer
        while the body fine-tunes (`HeadFit.hold_output`)."""
        if plan is not None and not isinstance(plan, HeadFit):
            raise TypeError(f"head_fit must be a HeadFit (e.g. HeadFit(min_steps=200)) or None, got {plan!r}")
        plan = plan or HeadFit()
        cache = next((cb for cb in self.cbs if isinstance(cb, FrozenFeatureCache)), None)
        with cache.fitting_head(plan) if cache is not None else nullcontext():
            self.fit_one_cycle(freeze_epochs, slice(lr), pct_start=0.99, wd=wd, cbs=cbs, reset_opt=True)
        solved = cache is not None and cache.active and cache.head_solved
        self._warn_short_phase("frozen", freeze_epochs, fitted=solved or (cache is not None and cache.active
                                                                          and cache.head_passes > 1))
        return solved and plan.hold_output

    def _warn_short_phase(self, phase: str, epochs: int, fitted: bool = False) -> None:
        """The small-data warnings of `phase_warnings`; none for a head that `HeadFit` fitted to convergence."""
        if fitted or os.environ.get("LEARNKIT_SMALL_DATA_WARNINGS", "1") == "0":
            return
        train = self.dls.train
        n_items = len(train.dataset) if hasattr(train, "dataset") else 0
        losses = [float(v) for v in getattr(self.recorder, "losses", [])]
        for msg in phase_warnings(phase, len(losses), losses, n_items, getattr(train, "batch_size", None), epochs):
            warnings.warn(msg, SmallDataWarning, stacklevel=4)
