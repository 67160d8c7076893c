"""`ExperimentCallback`: what the experiment trackers (TensorBoard, MLflow, W&B) share.

A tracker subclass implements five small hooks — ``open_run``, ``log_params``, ``log_metrics``,
``log_images`` and ``close_run`` — and this class decides *when* they run:

- only on rank 0 under DDP (the other ranks do nothing);
- per training batch every ``log_every`` batches: the loss and the learning rate (reading the loss there
  is the one host sync logging needs; the other batches add none);
- per epoch: ``train_loss``, ``valid_loss``, the metrics and the epoch time, as the `Recorder` wrote them;
- at the end: the run is closed as finished — or as failed when an error escapes ``fit``
  (the ``after_fit_exception`` event), and the error still propagates.

A run is one ``fit``: ``fine_tune`` (two fits) with ``cbs=[tracker]`` makes two MLflow or W&B runs, and
continues the same TensorBoard curves (the batch count carries on from one fit to the next). The tracking
library is imported only when a run opens (`require`), so learnkit imports without it.
"""
from __future__ import annotations

import importlib
import math
import warnings
from types import ModuleType
from typing import Any

from ..callback import Callback
from ..optim import n_splitter_groups
from ..process_group import is_rank0
from ..validation import check_int
from ..losses import loss_activation, loss_decodes

__all__ = ["ExperimentCallback", "require", "run_params", "sample_predictions", "images_figure"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that names the learnkit extra to install.

    >>> require("math", "none").sqrt(4.0)
    2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{module} is not installed; install it with: pip install \"learnkit[{extra}]\" "
                          f"({e})") from e


def _scalar(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, slice):
        return f"slice({v.start}, {v.stop})"
    return str(v)


def run_params(learn: Any) -> dict[str, Any]:
    """The hyper-parameters of a fit as a flat dict of numbers and strings (what trackers log as params)."""
    spec = getattr(learn, "model_spec", None) or {}
    params: dict[str, Any] = {
        "n_epoch": learn.n_epoch, "lr": _scalar(learn.lr), "wd": _scalar(learn.wd),
        "opt_func": getattr(learn.opt_func, "__name__", str(learn.opt_func)),
        "loss_func": type(learn.loss_func).__name__, "model": type(learn.model).__name__,
        "n_params": sum(p.numel() for p in learn.model.parameters()),
        "precision": learn.precision, "metrics": ", ".join(m.name for m in learn.metrics) or "-",
        "bs": getattr(learn.dls.train, "batch_size", None) or getattr(learn.dls, "bs", None),
        "dls": type(learn.dls).__name__,
    }
    if spec.get("builder"):
        params["builder"] = spec["builder"]
        for k, v in (spec.get("kwargs") or {}).items():
            if isinstance(v, (bool, int, float, str)):  # skip long lists (vocabularies, ids)
                params[f"model.{k}"] = v
    return {k: v for k, v in params.items() if v is not None}


class ExperimentCallback(Callback):
    """Base class of the experiment trackers; see the module docstring. Subclasses set ``extra`` (the
    learnkit extra that installs their library) and implement the hooks.

    >>> import torch
    >>> class PrintTracker(ExperimentCallback):  # a tracker implements the hooks; the base class calls them
    ...     def open_run(self): print("run opened")
    ...     def log_params(self, params): print("params:", params["model"], params["n_epoch"])
    ...     def log_metrics(self, metrics, step, epoch=None):
    ...         if epoch is not None: print(f"epoch {epoch}:", sorted(metrics))
    ...     def close_run(self, failed): print("run closed, failed:", failed)
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.fit(1, cbs=PrintTracker(log_every=10))
    run opened
    params: Linear 1
    epoch 0: ['epoch/time', 'epoch/train_loss', 'epoch/valid_loss']
    run closed, failed: False
    """

    order = 75  # after the Recorder (50) and the metrics table (60) have written the epoch
    run_valid = False  # batch events: training batches only
    extra = ""

    def __init__(self, log_every: int = 50, log_preds: bool = False, n_preds: int = 4):
        check_int("log_every", log_every, what="(batches between two loss logs)")
        self.log_every, self.log_preds, self.n_preds = log_every, log_preds, n_preds
        self.active, self.step = False, 0

    # --- hooks for subclasses --------------------------------------------------------------------------
    def open_run(self) -> None:
        raise NotImplementedError

    def log_params(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int | None = None) -> None:
        raise NotImplementedError

    def log_images(self, images: Any, titles: list[str], step: int) -> None:
        """``images``: float ``[N, 3, H, W]`` in ``[0, 1]``; the default logs nothing."""

    def close_run(self, failed: bool) -> None:
        raise NotImplementedError

    # --- events ----------------------------------------------------------------------------------------
    def before_fit(self):
        self.active = False  # ``step`` (training batches seen) carries on across the fits of one callback
        if not is_rank0() or hasattr(self.learn, "lr_finder"):
            return
        self.open_run()
        self.active = True  # from here on the run is closed, as finished or failed, whatever happens
        self.log_params(run_params(self.learn))

    def after_batch(self):
        if not self.active or self.learn.loss is None:
            return
        self.step += 1
        if self.step % self.log_every == 0 or self.step == 1:
            out = {"train/loss": float(self.learn.loss)}  # the one sync, every log_every batches
            opt = self.learn.opt
            for i, pg in enumerate(opt.param_groups[:n_splitter_groups(opt)]):  # one per splitter group
                out[f"lr/group{i}"] = float(pg["lr"])
            self.log_metrics(out, self.step)

    def after_epoch(self):
        if not self.active:
            return
        rec = self.learn.recorder
        names, log = rec.metric_names, rec.log
        values = {f"epoch/{n}": float(v) for n, v in zip(names[1:], log[1:])
                  if isinstance(v, (int, float)) and math.isfinite(v)}
        self.log_metrics(values, self.step, epoch=self.learn.epoch)
        if self.log_preds:
            sample = sample_predictions(self.learn, self.n_preds)
            if sample is not None:
                self.log_images(*sample, step=self.step)

    def after_fit(self):
        self._close(failed=False)

    def after_fit_exception(self):
        self._close(failed=True)

    def _close(self, failed: bool) -> None:
        if not self.active:
            return
        self.active = False
        try:
            self.close_run(failed)
        except Exception as e:  # noqa: BLE001 - never hide the training error (or result) behind a logging one
            warnings.warn(f"{type(self).__name__} could not close its run: {type(e).__name__}: {e}", stacklevel=2)


def sample_predictions(learn: Any, n: int = 4) -> tuple[Any, list[str]] | None:
    """The first ``n`` validation images with ``"target / prediction"`` titles, for image classifiers
    (data with ``decode_images`` and ``decode_target``); ``None`` for other tasks."""
    import torch
    dls = learn.dls
    if dls.valid is None or not (hasattr(dls, "decode_images") and hasattr(dls, "decode_target")):
        return None
    x, y = dls.one_batch(1)[:2]
    x, y = x[:n], y[:n]
    was_training = learn.model.training
    learn.model.eval()
    with torch.no_grad():
        out = learn.model(x).float()
    learn.model.train(was_training)
    dec = loss_decodes(learn.loss_func)(loss_activation(learn.loss_func)(out))
    titles = [f"{dls.decode_target(t)} / {dls.decode_target(d)}" for t, d in zip(y.cpu(), dec.cpu())]
    return dls.decode_images(x).float().cpu(), titles


def images_figure(images: Any, titles: list[str]) -> Any:
    """A matplotlib figure of float ``[N, 3, H, W]`` images in one row, each with its title."""
    import matplotlib.pyplot as plt
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.5 * n, 2.8), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles):
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig
