"""`CSVLogger`: one row per epoch in a CSV file."""
from __future__ import annotations

import csv
from pathlib import Path

from ..callback import Callback

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Append ``epoch, train_loss, valid_loss, metrics..., time`` to ``learn.path/fname`` after each epoch."""

    order = 70

    def __init__(self, fname: str | Path = "history.csv", append: bool = False):
        self.fname, self.append = Path(fname), append

    def before_fit(self):
        self.path = self.fname if self.fname.is_absolute() else self.learn.path / self.fname
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not (self.append and self.path.exists())
        self.file = open(self.path, "a" if not new else "w", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(self.learn.recorder.metric_names)

    def after_epoch(self):
        self.writer.writerow(self.learn.recorder.log)
        self.file.flush()

    def after_fit(self):
        self.file.close()

    def read(self):
        """The log as a pandas DataFrame."""
        import pandas as pd
        return pd.read_csv(self.path)
