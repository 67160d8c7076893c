"""`Recorder`: losses, learning rates and metrics, per batch and per epoch, and their plots."""
from __future__ import annotations

import math
import time


from ..callback import Callback
from ..device import batch_size

__all__ = ["Recorder"]


class Recorder(Callback):
    """Always present as ``learn.recorder``.

    Per training batch: ``losses`` (raw), ``smooth_losses`` (debiased moving average), ``lrs`` and
    ``moms`` (of the last parameter group). Per epoch: ``values`` — rows of
    ``[train_loss, valid_loss, *metrics]`` named by ``metric_names`` (``epoch`` and ``time`` around them).
    """

    order = 50

    def __init__(self, beta: float = 0.98):
        self.beta = beta
        self.losses: list[float] = []
        self.smooth_losses: list[float] = []
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.values: list[list[float]] = []
        self.log: list = []

    @property
    def metric_names(self) -> list[str]:
        return ["epoch", "train_loss", "valid_loss"] + [m.name for m in self.learn.metrics] + ["time"]

    def before_fit(self):
        self.losses, self.smooth_losses, self.lrs, self.moms = [], [], [], []
        self.values = []
        self._avg, self._n_avg = 0.0, 0

    def state_dict(self) -> dict:
        """The history so far, so that a resumed run (see `CheckpointCallback`) continues it."""
        return {"losses": self.losses, "smooth_losses": self.smooth_losses, "lrs": self.lrs, "moms": self.moms,
                "values": self.values, "avg": self._avg, "n_avg": self._n_avg}

    def load_state_dict(self, state: dict) -> None:
        self.losses, self.smooth_losses = list(state["losses"]), list(state["smooth_losses"])
        self.lrs, self.moms, self.values = list(state["lrs"]), list(state["moms"]), [list(v) for v in state["values"]]
        self._avg, self._n_avg = state["avg"], state["n_avg"]

    def before_epoch(self):
        self.start_epoch = time.perf_counter()
        self._train_sum, self._train_n = 0.0, 0
        self.log = [self.learn.epoch]

    def before_train(self):
        self._train_sum, self._train_n = 0.0, 0

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
        loss = float(learn.loss)
        if learn.training:
            self._train_sum += loss * n
            self._train_n += n
            self.losses.append(loss)
            self._n_avg += 1
            self._avg = self.beta * self._avg + (1 - self.beta) * loss
            self.smooth_losses.append(self._avg / (1 - self.beta ** self._n_avg))
            pg = learn.opt.param_groups[-1]
            self.lrs.append(pg["lr"])
            mom = pg.get("betas", (pg.get("momentum", 0.0),))[0]
            self.moms.append(mom)
        else:
            self._valid_sum += loss * n
            self._valid_n += n
            for m in learn.metrics:
                m.accumulate(learn.pred.detach(), learn.yb[0])

    @property
    def smooth_loss(self) -> float:
        return self.smooth_losses[-1] if self.smooth_losses else float("nan")

    def valid_summary(self) -> list[float]:
        loss = self._valid_sum / self._valid_n if self._valid_n else float("nan")
        return [loss] + [m.value for m in self.learn.metrics]

    def after_epoch(self):
        train_loss = self._train_sum / self._train_n if self._train_n else float("nan")
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
