"""What `Learner.fine_tune` does for a new head before it unfreezes the body.

A new head starts random. With fastai's recipe (one frozen epoch at ``2e-3``) it gets as many optimizer steps
as the data has batches: about 12 on a few hundred photos, 4 on a few dozen. That is not enough to fit it, and
unfreezing then trains the body against a head that is still mostly noise (a multi-label model below the
all-absent baseline, an image regression with R² far below zero). Three pieces fix it:

- `HeadFit`, the plan of the frozen phase: when the task's `FrozenFeatureCache` can serve the body's features
  (computed once, from the images without augmentation), each frozen epoch makes several passes over them, so
  the head gets at least ``min_steps`` optimizer steps at the cost of one body pass;
- `init_output_bias`: the last linear layer's bias starts at the training targets' prior (the class
  frequencies' log, the labels' log-odds, the mean target inside ``y_range``), so the first step already
  predicts the trivial baseline instead of noise;
- `phase_warnings`: the plain-language warning when a phase is too short for the data (too few steps, or the
  head's training loss still falling steeply when the body unfreezes), saying what to change.

>>> plan = HeadFit(min_steps=300)
>>> plan.passes(n_epoch=1, n_batches=12)   # 12 batches of cached features: 25 passes make 300 steps
25
>>> plan.passes(n_epoch=1, n_batches=500)  # a large data set already makes enough steps
1
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layers import SigmoidRange
from .losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat

__all__ = ["SmallDataWarning", "HeadFit", "init_output_bias", "fit_output_layer", "hold_output_layer", "output_layer",
           "phase_warnings", "MIN_PHASE_STEPS", "C_GRID"]

class SmallDataWarning(UserWarning):
    """`fine_tune`'s warning that a phase was too short for the data (see `phase_warnings`). Filter it like any
    warning (``warnings.filterwarnings("ignore", category=SmallDataWarning)``), or set the environment variable
    ``LEARNKIT_SMALL_DATA_WARNINGS=0`` (the notebooks' tiny CI runs do).

    >>> issubclass(SmallDataWarning, UserWarning)
    True
    """


#: the inverse L2 strengths `fit_output_layer` chooses from by cross-validation
C_GRID = (1e-3, 1e-2, 1e-1, 1.0)

#: fewer optimizer steps than this in a phase of `fine_tune` triggers the small-data warning
MIN_PHASE_STEPS = 8


@dataclass
class HeadFit:
    """The frozen phase's plan when the head trains on cached features (see the module docstring).

    Args:
        min_steps: the fewest optimizer steps the head gets in the frozen phase (the passes over the cached
            features are repeated until there are that many) when the solver does not apply.
        max_passes: the most passes over the cached features per frozen epoch.
        init_bias: start the output layer's bias at the training targets' prior (`init_output_bias`).
        solver: ``'lbfgs'``: when the head is one linear layer (after batch-norm and dropout: the default
            head), fit it to convergence on all the cached features at once (`fit_output_layer`: L-BFGS, the
            task's loss plus an L2 penalty of strength ``1 / (C * n_items)``, scikit-learn's linear probe); the
            frozen epochs then make one pass each. ``None``: passes only.
        C: the inverse L2 strength; ``None`` picks it from `C_GRID` by 3-fold cross-validation on the training
            features (the validation set is never used), as a probe would.
        max_iter: L-BFGS iterations (each one pass over the cached features, no image decoded).
        hold_output: when the solver fitted the output layer, keep it as fitted while the body fine-tunes
            (`hold_output_layer`): the body's features adapt to the fitted classifier, and Adam's steps do not
            undo its regularisation on small data (``False``: the output layer trains with the rest).

    >>> HeadFit().passes(n_epoch=2, n_batches=4)  # 2 frozen epochs of 4 batches: 38 passes each
    38
    """

    min_steps: int = 300
    max_passes: int = 200
    init_bias: bool = True
    solver: str | None = "lbfgs"
    C: float | None = None
    max_iter: int = 100
    hold_output: bool = True

    def __post_init__(self) -> None:
        if self.solver not in (None, "lbfgs"):
            raise ValueError(f"HeadFit solver must be 'lbfgs' or None, got {self.solver!r}")
        if self.C is not None and not self.C > 0:
            raise ValueError(f"HeadFit C (inverse L2 strength, as in scikit-learn) must be > 0 or None, got {self.C!r}")

    def passes(self, n_epoch: int, n_batches: int) -> int:
        """Passes over the cached training features per frozen epoch."""
        if n_batches <= 0 or n_epoch <= 0:
            return 1
        return max(1, min(self.max_passes, math.ceil(self.min_steps / (n_epoch * n_batches))))


def fit_output_layer(model: nn.Module, feats: torch.Tensor, targets: torch.Tensor, loss_func: object,
                     C: float | None = None, max_iter: int = 100) -> bool:
    """Fit ``model``'s output layer to convergence on cached features, when that layer is all that trains.

    ``model(feats)`` must map the features to the outputs (a `VisionClassifier` does for 2-D inputs). Applies
    when the trainable parameters are one ``nn.Linear`` and at most a ``BatchNorm1d`` on its input: the
    batch-norm's statistics are set to the features' own (so in eval mode it standardises them, as a probe
    would), and the linear layer minimises ``loss_func(model(feats), targets) + ||W||² / (2 C n)`` by
    full-batch L-BFGS in eval mode (no dropout). ``C=None`` picks ``C`` from `C_GRID` by the mean held-out
    loss of a 3-fold split of ``feats``. Returns whether it ran; the model is left as it was otherwise.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(200, 5); y = (x[:, 0] - x[:, 1] > 0).long()
    >>> head = nn.Sequential(nn.BatchNorm1d(5), nn.Dropout(0.5), nn.Linear(5, 2))
    >>> fit_output_layer(head, x, y, CrossEntropyLossFlat())
    True
    >>> float((head.eval()(x).argmax(1) == y).float().mean()) > 0.95
    True
    """
    linear, _ = output_layer(model)
    if linear is None or len(feats) < 2:
        return False
    owners = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    bns = [m for m in owners if isinstance(m, nn.BatchNorm1d)]
    if set(owners) - set(bns) != {linear} or len(bns) > 1 or (bns and bns[0].num_features != feats.shape[1]):
        return False
    f = feats.detach().float().to(linear.weight.device)
    y = targets.to(linear.weight.device)
    was_training = model.training
    if bns:  # eval-mode batch-norm = standardisation by the data's own statistics
        bn = bns[0]
        with torch.no_grad():
            bn.running_mean.copy_(f.mean(0))
            bn.running_var.copy_(f.var(0, unbiased=True))
            bn.weight.fill_(1.0)
            bn.bias.zero_()
    frozen = [p for p in model.parameters() if p.requires_grad and p is not linear.weight and p is not linear.bias]
    for p in frozen:
        p.requires_grad_(False)
    model.eval()
    start = {k: v.detach().clone() for k, v in linear.state_dict().items()}

    def solve(idx: torch.Tensor, c: float, iters: int) -> None:
        linear.load_state_dict(start)
        xs, ys, lam = f[idx], y[idx], 1.0 / (c * len(idx))
        opt = torch.optim.LBFGS(list(linear.parameters()), lr=1, max_iter=iters, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_func(model(xs), ys) + lam / 2 * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        opt.zero_grad(set_to_none=True)

    try:
        with torch.enable_grad():
            if C is None:
                C = _cross_validated_c(model, f, y, loss_func, solve, max_iter)
            solve(torch.arange(len(f), device=f.device), C, max_iter)
            if not all(torch.isfinite(p).all() for p in linear.parameters()):
                linear.load_state_dict(start)
                return False
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    return True


def _cross_validated_c(model: nn.Module, f: torch.Tensor, y: torch.Tensor, loss_func: Any, solve: Any,
                       max_iter: int, folds: int = 3) -> float:
    """The ``C`` of `C_GRID` with the lowest mean held-out loss over a seeded ``folds``-fold split."""
    if len(f) < 2 * folds:
        return C_GRID[-1]
    order = torch.randperm(len(f), generator=torch.Generator().manual_seed(0)).to(f.device)
    parts = [order[k::folds] for k in range(folds)]
    best, best_loss = C_GRID[-1], math.inf
    for c in C_GRID:
        total = 0.0
        for k in range(folds):
            train = torch.cat([parts[j] for j in range(folds) if j != k])
            solve(train, c, max(20, max_iter // 2))
            with torch.no_grad():
                total += float(loss_func(model(f[parts[k]]), y[parts[k]]))
        if total < best_loss:
            best, best_loss = c, total
    return best


@contextmanager
def hold_output_layer(model: nn.Module) -> Iterator[nn.Linear | None]:
    """Within this block ``model``'s output layer (`output_layer`) does not train (``requires_grad=False``);
    afterwards, or on an error, its parameters train again as before.

    >>> head = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))
    >>> with hold_output_layer(head) as lin:
    ...     [p.requires_grad for p in head.parameters()]
    [True, True, False, False]
    >>> all(p.requires_grad for p in head.parameters())
    True
    """
    linear, _ = output_layer(model)
    held = [p for p in linear.parameters() if p.requires_grad] if linear is not None else []
    for p in held:
        p.requires_grad_(False)
    try:
        yield linear
    finally:
        for p in held:
            p.requires_grad_(True)


def output_layer(model: nn.Module) -> tuple[nn.Linear | None, SigmoidRange | None]:
    """The model's last ``nn.Linear`` and the `SigmoidRange` that follows it, if any (``y_range``).

    >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), SigmoidRange(0, 1))
    >>> output_layer(m)
    (Linear(in_features=8, out_features=2, bias=True), SigmoidRange(low=0.0, high=1.0))
    """
    linear, rng = None, None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            linear, rng = m, None
        elif isinstance(m, SigmoidRange) and linear is not None:
            rng = m
    return linear, rng


@torch.no_grad()
def init_output_bias(model: nn.Module, targets: torch.Tensor, loss_func: object) -> str | None:
    """Set the bias of ``model``'s output layer so that, before any training, it predicts the training
    targets' prior; returns what it did, or ``None`` when the loss or the shapes do not fit (nothing changes).

    - cross-entropy (single label): ``log`` of the class frequencies (with one pseudo-count each);
    - BCE with logits (multi-label): each label's log-odds, clipped to ``[-6, 6]``;
    - MSE / L1 (regression): the target mean, through the inverse of ``y_range``'s sigmoid when there is one.

    >>> head = nn.Sequential(nn.Linear(4, 3))
    >>> init_output_bias(head, torch.tensor([[1., 0., 0.], [1., 1., 0.], [1., 0., 0.], [1., 0., 0.]]),
    ...                  BCEWithLogitsLossFlat())
    'multi-label log-odds'
    >>> torch.sigmoid(head[0].bias).round(decimals=2).tolist()  # the labels' frequencies, clipped
    [1.0, 0.25, 0.0]
    """
    linear, rng = output_layer(model)
    if linear is None or linear.bias is None:
        return None
    n_out = linear.out_features
    t = targets.detach().float().cpu()
    if isinstance(loss_func, CrossEntropyLossFlat):
        if t.ndim != 1 or not len(t):
            return None
        counts = torch.bincount(t.long().clamp(min=0), minlength=n_out)[:n_out].float() + 1
        bias = counts.div(counts.sum()).log()
        kind = "class log-prior"
    elif isinstance(loss_func, BCEWithLogitsLossFlat):
        if t.ndim != 2 or t.shape[1] != n_out:
            return None
        p = t.mean(0).clamp(1e-6, 1 - 1e-6)
        bias = (p / (1 - p)).log().clamp(-6, 6)
        kind = "multi-label log-odds"
    elif isinstance(loss_func, MSELossFlat):  # L1LossFlat too
        t = t.reshape(len(t), -1)
        if t.shape[1] != n_out:
            return None
        mean = t.mean(0)
        if rng is not None:
            u = ((mean - rng.low) / (rng.high - rng.low)).clamp(0.02, 0.98)
            bias, kind = (u / (1 - u)).log(), "target mean inside y_range"
        else:
            bias, kind = mean, "target mean"
    else:
        return None
    if not torch.isfinite(bias).all():
        return None
    linear.bias.copy_(bias.to(linear.bias))
    return kind


def phase_warnings(phase: str, n_steps: int, losses: Sequence[float], n_items: int, bs: int | None,
                   epochs: int) -> list[str]:
    """Why a phase of `fine_tune` was too short for the data, in words that say what to do (empty: fine).

    ``phase``: ``'frozen'`` or ``'unfrozen'``; ``n_steps``: the optimizer steps it made; ``losses``: its
    per-batch training losses (the frozen phase's are checked for a loss still falling steeply at its end).

    >>> "unfrozen phase made only 4 optimizer steps" in phase_warnings("unfrozen", 4, [], n_items=40, bs=16, epochs=2)[0]
    True
    >>> phase_warnings("frozen", 300, [1.0 / (1 + i) for i in range(300)], n_items=40, bs=16, epochs=1)  # flattened
    []
    >>> "still falling steeply" in phase_warnings("frozen", 12, [1.0 - 0.05 * i for i in range(12)], n_items=40, bs=4,
    ...                                          epochs=1)[0]
    True
    """
    out = []
    data = f"{n_items} training items" + (f", bs={bs}" if bs else "")
    if 0 < n_steps < MIN_PHASE_STEPS:
        knob = "more epochs (fine_tune(epochs=...)) or a smaller bs" if phase == "unfrozen" else \
            "freeze_epochs=... or a smaller bs"
        out.append(f"fine_tune: the {phase} phase made only {n_steps} optimizer steps ({data}, {epochs} "
                   f"epoch{'s' * (epochs != 1)}), too few to train on this little data: use {knob}")
    if phase == "frozen" and len(losses) >= 8:
        # a fitted head's loss flattens out: the last quarter of the phase adds little to what the phase gained.
        # Still falling steeply: the last quarter brought over a quarter of the gain, and over 10 % of the start.
        q = max(2, len(losses) // 4)
        first, before, last = (sum(v) / q for v in (losses[:q], losses[-2 * q:-q], losses[-q:]))
        gain, recent = first - last, before - last
        if all(map(math.isfinite, (first, before, last))) and gain > 0 and recent > 0.25 * gain \
                and recent > 0.1 * first:
            out.append(f"fine_tune: the head's training loss was still falling steeply when the body unfroze "
                       f"({before:.3g} -> {last:.3g} over the last half of the frozen phase, {data}): the head is "
                       f"not fitted yet; use freeze_epochs=... or a higher base_lr")
    return out
