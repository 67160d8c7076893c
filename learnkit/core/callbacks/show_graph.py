"""`ShowGraphCallback`: the training and validation losses redrawn after every epoch.

In a notebook the figure updates in place (IPython's ``display``/``update_display``); elsewhere the latest
figure is kept as ``cb.fig`` (and can be saved with ``cb.fig.savefig``).

>>> ShowGraphCallback().order
65
"""
from __future__ import annotations

from ..callback import Callback

__all__ = ["ShowGraphCallback"]


class ShowGraphCallback(Callback):
    """Plot the per-batch training loss and the per-epoch validation loss, with the x axis spanning the whole
    ``fit``, after each epoch.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> cb = ShowGraphCallback()
    >>> learn.fit(2, cbs=cb)
    >>> [line.get_label() for line in cb.ax.lines]  # outside a notebook: cb.fig.savefig("losses.png")
    ['train', 'valid']
    """

    order = 65  # after the Recorder (50) has written the epoch's values
    run_valid = False

    def before_fit(self):
        self.fig, self._handle = None, None

    def after_epoch(self):
        import matplotlib.pyplot as plt
        rec, learn = self.learn.recorder, self.learn
        n_train = len(rec.losses)
        per_epoch = max(1, n_train // max(1, learn.epoch + 1 - learn.start_epoch))
        total = per_epoch * (learn.n_epoch - learn.start_epoch)
        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(6, 4))
        ax = self.ax
        ax.clear()
        ax.plot(range(n_train), rec.losses, label="train")
        valid = [(i, v[1]) for i, v in enumerate(rec.values) if len(v) > 1 and v[1] == v[1]]  # skip NaN rows
        if valid:
            ax.plot([(i + 1) * per_epoch for i, _ in valid], [v for _, v in valid], "o-", label="valid")
        ax.set_xlim(0, max(total, n_train))
        ax.set_xlabel("batches")
        ax.set_ylabel("loss")
        ax.legend()
        self._show()

    def _show(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display, update_display
        except ImportError:
            return
        if get_ipython() is None:
            return
        if self._handle is None:
            self._handle = display(self.fig, display_id=True)
        else:
            update_display(self.fig, display_id=self._handle.display_id)

    def after_fit(self):
        if self.fig is not None and self._handle is not None:
            import matplotlib.pyplot as plt
            plt.close(self.fig)  # shown in the notebook already: do not show it twice
