"""Progress bars (tqdm.auto: a terminal bar or a notebook widget) and the per-epoch metrics table."""
from __future__ import annotations

import math
import os

from ..callback import Callback

__all__ = ["ProgressCallback", "in_notebook"]


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
        shell = get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # noqa: BLE001 - IPython absent or odd shells
        return False


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
    """

    order = 60

    def _active(self) -> bool:
        return bool(self.learn.show_progress) and os.environ.get("LEARNKIT_PROGRESS", "1") != "0"

    def before_fit(self):
        self.on = self._active()
        self.rows: list[list[str]] = []
        self.bar = None
        self.handle = None
        self.notebook = in_notebook()

    def _new_bar(self, desc: str):
        if not self.on:
            return
        from tqdm.auto import tqdm
        self.bar = tqdm(total=self.learn.n_iter, desc=desc,
                        leave=False, dynamic_ncols=True)

    def before_train(self):
        self._new_bar(f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch} train")

    def before_validate(self):
        self._close()
        self._new_bar(f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch} valid")

    def after_batch(self):
        if self.bar is not None:
            self.bar.update(1)
            if self.learn.training:
                self.bar.set_postfix(loss=f"{self.learn.recorder.smooth_loss:.4f}", refresh=False)

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
            from tqdm.auto import tqdm
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
