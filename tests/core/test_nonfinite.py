"""Issue 19 item 3: a non-finite training loss is warned about once per fit, naming the epoch and batch."""
import warnings

import pytest
import torch
from torch import nn

from coretools import make_dls, regression_data
from learnkit import Callback, Learner, MSELossFlat, NonFiniteLossWarning


class PoisonBatch(Callback):
    """Makes the loss NaN from (epoch 1, batch 2) on."""

    def after_loss(self):
        if self.learn.epoch == 1 and self.learn.iter >= 2:
            self.learn.loss = self.learn.loss * float("nan")


def test_nonfinite_loss_warns_once_naming_epoch_and_batch():
    torch.set_num_threads(1)
    x, y = regression_data(80)
    learn = Learner(make_dls(x, y), nn.Linear(3, 1), loss_func=MSELossFlat(), lr=1e-2, cbs=[PoisonBatch()])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        learn.fit(2)
    hits = [m for m in w if issubclass(m.category, NonFiniteLossWarning)]
    assert len(hits) == 1
    assert "epoch 1, batch 2" in str(hits[0].message)


def test_finite_loss_does_not_warn():
    x, y = regression_data(80)
    learn = Learner(make_dls(x, y), nn.Linear(3, 1), loss_func=MSELossFlat(), lr=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteLossWarning)
        learn.fit(1)
