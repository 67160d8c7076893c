"""Progress bars (tqdm: a terminal bar, or a notebook widget when ipywidgets is installed) and the per-epoch
metrics table (an HTML table updated in place in a notebook)."""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
import warnings

from tqdm import tqdm

from ..callback import Callback

__all__ = ["ProgressCallback", "in_notebook", "progress_bar"]


def _import_tqdm_auto_quietly() -> None:
    """In a notebook without ipywidgets, the first import of ``tqdm.auto`` (huggingface_hub's, under timm and
    transformers) warns "IProgress not found" on stderr. learnkit shows no bar there (see `_bar_class`) and says
    how to get widgets in its docs (the ``notebook`` extra), so it makes that first import itself, with that one
    message silenced for the import only: the warning filters are left as they were."""
    if "tqdm.auto" in sys.modules or "ipykernel.zmqshell" not in sys.modules:  # elsewhere tqdm.auto never warns
        return
    if importlib.util.find_spec("ipywidgets") is not None:  # with widgets it does not warn either
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found", module=r"tqdm\.")
        importlib.import_module("tqdm.auto")  # now in sys.modules: later imports of it are silent


_import_tqdm_auto_quietly()


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
        shell = get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # noqa: BLE001 - IPython absent or odd shells
        return False


def _bar_class(notebook: bool):
    """tqdm's widget bar in a notebook with ipywidgets; none in a notebook without it (a text bar would land
    on stderr, after a TqdmWarning: the HTML table still updates each epoch); tqdm's text bar elsewhere."""
    if notebook:
        try:
            import ipywidgets  # noqa: F401 - only to know whether widgets can be drawn
        except ImportError:
            return None
        from tqdm.notebook import tqdm as notebook_tqdm  # imports ipywidgets: only in a notebook that has it
        return notebook_tqdm
    return tqdm


def progress_bar(iterable=None, total: int | None = None, desc: str | None = None, leave: bool = False,
                 disable: bool = False):
    """A tqdm bar for any loop in learnkit: a widget in a notebook with ipywidgets, text in a terminal, and
    a silent pass-through in a notebook without ipywidgets (no ``TqdmWarning``, nothing on stderr) or with
    ``LEARNKIT_PROGRESS=0`` in the environment.

    >>> sum(progress_bar(range(3), disable=True))
    3
    """
    bar_class = _bar_class(in_notebook())
    if bar_class is None or os.environ.get("LEARNKIT_PROGRESS", "1") == "0":
        bar_class, disable = tqdm, True
    return bar_class(iterable, total=total, desc=desc, leave=leave, disable=disable, dynamic_ncols=True)


def _fmt(v) -> str:
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.6f}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


class ProgressCallback(Callback):
    """Shows a bar per phase and a row of ``epoch, train_loss, valid_loss, metrics..., time`` per epoch.

    Silent when ``learn.show_progress`` is false (``Learner(progress=False)``), inside ``with learn.no_bar():``, or with ``LEARNKIT_PROGRESS=0``.
    In a notebook the table is one HTML table updated in place.

    >>> import torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat())
    >>> [type(cb).__name__ for cb in learn.cbs]  # every Learner has one, as learn.progress
    ['Recorder', 'ProgressCallback']
    >>> with learn.no_bar():  # no bars and no table for this block
    ...     learn.fit(1)
    """

    order = 60
    every = 50  # batches between updates of the loss shown on the bar

    def _active(self) -> bool:
        return bool(self.learn.show_progress) and os.environ.get("LEARNKIT_PROGRESS", "1") != "0"

    def before_fit(self):
        self.on = self._active()
        self.rows: list[list[str]] = []
        self.bar = None
        self.handle = None
        self.notebook = in_notebook()

    def _new_bar(self, desc: str):
        bar_class = _bar_class(self.notebook) if self.on else None
        if bar_class is None:
            return
        self.bar = bar_class(total=self.learn.n_iter, desc=desc, leave=False, dynamic_ncols=True)

    def before_train(self):
        self._new_bar(f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch} train")

    def before_validate(self):
        self._close()
        self._new_bar(f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch} valid")

    def after_batch(self):
        if self.bar is not None:
            self.bar.update(1)
            learn = self.learn
            # reading the smoothed loss waits for the device: only every `every` batches (and the last one)
            if learn.training and (learn.iter % self.every == self.every - 1 or learn.iter == learn.n_iter - 1):
                self.bar.set_postfix(loss=f"{learn.recorder.smooth_loss:.4f}", refresh=False)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def after_train(self):
        self._close()

    def after_validate(self):
        self._close()

    def after_epoch(self):
        self._close()
        if not self.on:
            return
        rec = self.learn.recorder
        names = rec.metric_names
        row = [_fmt(v) for v in rec.log]
        if len(row) != len(names):
            return
        row[0] = str(int(rec.log[0]))
        row[-1] = f"{rec.log[-1]:.1f}s"
        self.rows.append(row)
        if self.notebook:
            self._show_html(names)
        else:
            widths = [max(len(n), 10) for n in names]
            if len(self.rows) == 1:
                tqdm.write("  ".join(n.ljust(w) for n, w in zip(names, widths)))
            tqdm.write("  ".join(c.ljust(w) for c, w in zip(row, widths)))

    def _show_html(self, names):
        from IPython.display import HTML, display
        head = "".join(f"<th>{n}</th>" for n in names)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in self.rows)
        table = HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if self.handle is None:
            self.handle = display(table, display_id=True)
        else:
            self.handle.update(table)

    def after_fit(self):
        self._close()

    def after_cancel_fit(self):
        self._close()
