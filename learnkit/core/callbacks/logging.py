"""`CSVLogger`: one row per epoch in a CSV file."""
from __future__ import annotations

import csv
from pathlib import Path

from ..paths import expand_path
from ..callback import Callback
from ..distributed import is_rank0

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Write ``epoch, train_loss, valid_loss, metrics..., time`` to ``learn.path/fname`` after each epoch
    (under DDP, rank 0 writes it).

    With ``append=False`` (fastai's default) each ``fit`` starts the file anew, replacing an existing one;
    ``append=True`` adds the rows to an existing file, whose header must name the same columns.

    >>> import tempfile, torch
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 metrics=mae, path=tempfile.mkdtemp(), progress=False)
    >>> logger = CSVLogger("history.csv")
    >>> learn.fit(2, cbs=logger)
    >>> df = logger.read()  # learn.path/history.csv
    >>> list(df.columns), len(df)
    (['epoch', 'train_loss', 'valid_loss', 'mae', 'time'], 2)
    """

    order = 70

    def __init__(self, fname: str | Path = "history.csv", append: bool = False):
        self.fname, self.append = expand_path(fname), append

    def before_fit(self):
        self.path = self.fname if self.fname.is_absolute() else self.learn.path / self.fname
        self.file = None
        if not is_rank0():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not (self.append and self.path.exists())
        if not new:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), [])
            if header != self.learn.recorder.metric_names:
                raise ValueError(f"CSVLogger(append=True): {self.path} has the columns {header}, this fit logs "
                                 f"{self.learn.recorder.metric_names}; log to another file or pass append=False")
        self.file = open(self.path, "a" if not new else "w", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(self.learn.recorder.metric_names)

    def after_epoch(self):
        if self.file is None:
            return
        self.writer.writerow(self.learn.recorder.log)
        self.file.flush()

    def after_fit(self):
        if self.file is not None:
            self.file.close()

    def read(self):
        """The log as a pandas DataFrame."""
        import pandas as pd
        return pd.read_csv(self.path)
