"""`Recorder`: losses, learning rates and metrics, per batch and per epoch, and their plots."""
from __future__ import annotations

import math
import time

import warnings

import torch

from ..callback import Callback
from ..device import batch_size
from ..metricbase import metric_value, run_metric
from ..optim import head_param_group
from ..process_group import all_reduce_sum, num_distrib

__all__ = ["Recorder", "NonFiniteLossWarning"]


class NonFiniteLossWarning(UserWarning):
    """A training loss was NaN or infinite (warned once per fit, at the first such batch)."""


class Recorder(Callback):
    """Always present as ``learn.recorder``.

    Per training batch: ``losses`` (raw), ``smooth_losses`` (debiased moving average), ``lrs`` and
    ``moms`` (of the last parameter group). Per epoch: ``values`` — rows of
    ``[train_loss, valid_loss, *metrics]`` named by ``metric_names`` (``epoch`` and ``time`` around them).

    Nothing here waits for the device in the training loop: batch losses and the epoch's sums stay on the
    device and are read back in one transfer when ``losses``/``smooth_losses``/``smooth_loss`` are read
    (the progress bar does every `ProgressCallback.every` batches), every ``flush_every`` batches (to bound
    their memory) and at the end of each phase. Under DDP the epoch's training loss is summed over ranks
    once per epoch (the per-batch ``losses`` are this rank's own).

    >>> import torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 metrics=mae, progress=False)
    >>> learn.fit(3)
    >>> rec = learn.recorder
    >>> rec.metric_names, len(rec.values), len(rec.losses), len(rec.lrs)  # 3 epochs of 2 training batches
    (['epoch', 'train_loss', 'valid_loss', 'mae', 'time'], 3, 6, 6)
    >>> sorted(rec.final_record())  # the last epoch's values by name (what trackers monitor)
    ['mae', 'train_loss', 'valid_loss']
    """

    order = 50
    flush_every = 256

    def __init__(self, beta: float = 0.98):
        self.beta = beta
        self._losses: list[float] = []
        self._smooth: list[float] = []
        self._pending: list = []  # batch losses still on the device
        self._pending_pos: list[tuple[int, int]] = []  # (epoch, batch) of each pending loss
        self._warned_nonfinite = False
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.values: list[list[float]] = []
        self.log: list = []
        self._avg, self._n_avg = 0.0, 0

    @property
    def metric_names(self) -> list[str]:
        return ["epoch", "train_loss", "valid_loss"] + [m.name for m in self.learn.metrics] + ["time"]

    def _flush(self) -> None:
        """Read the pending batch losses back from the device (one transfer) and extend the smoothed curve."""
        if not self._pending:
            return
        new = torch.stack([t.float() for t in self._pending]).cpu().tolist()
        pos = self._pending_pos
        self._pending, self._pending_pos = [], []
        if not self._warned_nonfinite:  # checked on the host copy: no extra device sync
            bad = next((i for i, v in enumerate(new) if not math.isfinite(v)), None)
            if bad is not None and bad < len(pos):
                self._warned_nonfinite = True
                epoch, it = pos[bad]
                warnings.warn(f"the training loss is {new[bad]} at epoch {epoch}, batch {it}: the weights may now be "
                              "NaN. Lower the learning rate, check the inputs and targets for NaN/inf, or add "
                              "TerminateOnNaNCallback() to stop at the first non-finite loss.",
                              NonFiniteLossWarning, stacklevel=2)
        for loss in new:
            self._n_avg += 1
            self._avg = self.beta * self._avg + (1 - self.beta) * loss
            self._smooth.append(self._avg / (1 - self.beta ** self._n_avg))
        self._losses += new

    @property
    def losses(self) -> list[float]:
        self._flush()
        return self._losses

    @property
    def smooth_losses(self) -> list[float]:
        self._flush()
        return self._smooth

    def before_fit(self):
        self._losses, self._smooth, self._pending, self.lrs, self.moms = [], [], [], [], []
        self._pending_pos, self._warned_nonfinite = [], False
        self.values = []
        self._avg, self._n_avg = 0.0, 0

    def state_dict(self) -> dict:
        """The history so far, so that a resumed run (see `CheckpointCallback`) continues it."""
        return {"losses": self.losses, "smooth_losses": self.smooth_losses, "lrs": self.lrs, "moms": self.moms,
                "values": self.values, "avg": self._avg, "n_avg": self._n_avg}

    def load_state_dict(self, state: dict) -> None:
        self._losses, self._smooth, self._pending = list(state["losses"]), list(state["smooth_losses"]), []
        self._pending_pos = []
        self.lrs, self.moms, self.values = list(state["lrs"]), list(state["moms"]), [list(v) for v in state["values"]]
        self._avg, self._n_avg = state["avg"], state["n_avg"]

    def epoch_state_dict(self) -> dict:
        """The running sums of the epoch in progress (a mid-epoch checkpoint keeps them; see `CheckpointCallback`)."""
        return {"train_sum": torch.as_tensor(self._train_sum).detach().clone(), "train_n": self._train_n}

    def load_epoch_state_dict(self, state: dict) -> None:
        self._train_sum = state["train_sum"].to(self.learn.device)  # exact: sums go on from the same float32
        self._train_n = int(state["train_n"])

    def before_epoch(self):
        self.start_epoch = time.perf_counter()
        self._train_sum, self._train_n = 0.0, 0
        self.log = [self.learn.epoch]

    def before_train(self):
        self._train_sum, self._train_n = 0.0, 0

    def after_train(self):
        self._flush()
        if getattr(self.learn, "distributed_trainer", None) is not None:  # once per epoch, not per batch
            self._train_sum, self._train_n = all_reduce_sum(self._train_sum, self._train_n)

    def reset_valid(self):
        self._valid_sum, self._valid_n = 0.0, 0
        for m in self.learn.metrics:
            m.reset()

    def before_validate(self):
        self.reset_valid()

    def after_batch(self):
        learn = self.learn
        if learn.loss is None:
            return
        n = batch_size(learn.yb) if learn.yb else batch_size(learn.xb)
        loss = learn.loss.detach() if isinstance(learn.loss, torch.Tensor) else torch.tensor(float(learn.loss))
        if learn.training:
            self._train_sum = self._train_sum + loss.float() * n  # stays on the device: no sync
            self._train_n += n
            self._pending.append(loss)
            self._pending_pos.append((learn.epoch, learn.iter))
            if len(self._pending) >= self.flush_every:
                self._flush()
            pg = head_param_group(learn.opt)
            self.lrs.append(pg["lr"])
            mom = pg.get("betas", (pg.get("momentum", 0.0),))[0]
            self.moms.append(mom)
        else:
            self._valid_sum = self._valid_sum + loss.float() * n
            self._valid_n += n
            for m in learn.metrics:  # an error names the metric
                run_metric(m, "accumulate", m.accumulate, learn.pred.detach(), learn.yb[0])

    def mean_losses_over_ranks(self) -> None:
        """Replace this fit's batch losses by their mean over ranks and recompute the smoothed curve (one
        collective; every rank must have recorded as many batches): `LRFinder` does it under DDP so that
        every rank suggests the same learning rates."""
        if not self.losses:
            return
        world = num_distrib()
        mean = [v / world for v in all_reduce_sum(*self.losses)]
        self._losses, self._smooth, self._avg, self._n_avg = [], [], 0.0, 0
        self._pending = [torch.tensor(v) for v in mean]
        self._pending_pos = []
        self._flush()  # recomputes the smoothed curve from the mean losses

    @property
    def smooth_loss(self) -> float:
        """The latest smoothed training loss (reads the pending losses back from the device)."""
        smooth = self.smooth_losses
        return smooth[-1] if smooth else float("nan")

    def valid_summary(self) -> list[float]:
        loss = float(self._valid_sum) / self._valid_n if self._valid_n else float("nan")
        return [loss] + [metric_value(m) for m in self.learn.metrics]

    def after_epoch(self):
        train_loss = float(self._train_sum) / self._train_n if self._train_n else float("nan")
        if self.learn.dls.valid is not None and getattr(self, "_valid_n", 0):
            valid = self.valid_summary()
        else:
            valid = [float("nan")] * (1 + len(self.learn.metrics))
        self.values.append([train_loss] + valid)
        self.log = [self.learn.epoch, train_loss] + valid + [time.perf_counter() - self.start_epoch]

    def final_record(self) -> dict[str, float]:
        """The last epoch's losses and metrics by name."""
        return dict(zip(self.metric_names[1:-1], self.values[-1])) if self.values else {}

    # --- plots ---------------------------------------------------------------------------------------
    def plot_loss(self, skip_start: int = 5, with_valid: bool = True, ax=None):
        """Smoothed training loss per batch and validation loss per epoch."""
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots()
        n = len(self.smooth_losses)
        ax.plot(range(skip_start, n), self.smooth_losses[skip_start:], label="train")
        if with_valid and self.values:
            per_epoch = max(1, n // len(self.values))
            xs = [(i + 1) * per_epoch - 1 for i in range(len(self.values))]
            vs = [v[1] for v in self.values]
            if not all(math.isnan(v) for v in vs):
                ax.plot(xs, vs, marker="o", label="valid")
        ax.set_xlabel("batch")
        ax.set_ylabel("loss")
        ax.legend()
        return ax

    def plot_lr(self, ax=None):
        """Learning rate (last parameter group) per batch."""
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots()
        ax.plot(self.lrs)
        ax.set_xlabel("batch")
        ax.set_ylabel("learning rate")
        return ax

    def plot_sched(self, figsize: tuple[float, float] | None = None):
        """fastai's schedule plot: the learning rate and the momentum (last parameter group) per batch, side
        by side (fastbook ch. 13 after ``fit_one_cycle``); returns the figure."""
        import matplotlib.pyplot as plt
        keys = [("lr", self.lrs)] + ([("mom", self.moms)] if any(m is not None for m in self.moms) else [])
        fig, axs = plt.subplots(1, len(keys), figsize=figsize or (6 * len(keys), 4), squeeze=False)
        for ax, (name, values) in zip(axs[0], keys):
            ax.plot(values)
            ax.set_xlabel("batch")
            ax.set_ylabel(name)
        return fig

    def plot_lr_find(self, skip_end: int = 5, suggestions=None, ax=None):
        """Loss against learning rate (log scale) as recorded by ``lr_find``, with suggestions marked."""
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots()
        end = max(1, len(self.lrs) - skip_end)
        ax.plot(self.lrs[:end], self.smooth_losses[:end])
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        if suggestions is not None:
            for name, lr in zip(suggestions._fields, suggestions):
                if lr is None or not (lr > 0):
                    continue
                idx = min(range(len(self.lrs)), key=lambda i: abs(math.log(self.lrs[i]) - math.log(lr)))
                ax.plot(lr, self.smooth_losses[idx], "o", label=f"{name}: {lr:.2e}")
            ax.legend()
        return ax
