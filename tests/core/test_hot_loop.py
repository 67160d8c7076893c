"""No host sync in the training loop's default callbacks (issue 15): the Recorder, the progress bar and the
metrics keep their sums on the device and read them back once per phase."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from learnkit import Callback, CrossEntropyLossFlat, DataLoaders, Learner, accuracy

SYNCS: list[str] = []
_READS = {"__float__", "__int__", "__bool__", "item", "tolist", "cpu", "numpy"}


class SyncSpy(torch.Tensor):
    """A tensor that records every read-back to the host (on a GPU, each is a sync)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in _READS:
            SYNCS.append(func.__name__)
        return super().__torch_function__(func, types, args, kwargs or {})


class Spied(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x).as_subclass(SyncSpy)


class SyncsPerBatch(Callback):
    order = 99  # after the Recorder and the progress bar

    def before_fit(self):
        self.per_batch = []

    def before_batch(self):
        self.n = len(SYNCS)

    def after_batch(self):
        self.per_batch.append(len(SYNCS) - self.n)


def test_default_callbacks_do_not_sync_per_batch():
    x = torch.randn(96, 4)
    y = torch.randint(0, 3, (96,))
    dls = DataLoaders.from_dsets(TensorDataset(x, y), TensorDataset(x, y), bs=8, device="cpu")
    spy = SyncsPerBatch()
    learn = Learner(dls, Spied(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=[spy], progress=True)
    SYNCS.clear()
    learn.fit(2, lr=1e-2)
    assert len(spy.per_batch) == 2 * (12 + 6)
    assert sum(spy.per_batch) == 0, spy.per_batch  # neither training nor validation batches read back
    assert SYNCS  # the epoch's numbers are read once per phase
    rec = learn.recorder
    assert len(rec.losses) == len(rec.smooth_losses) == len(rec.lrs) == 24
    assert abs(rec.values[-1][0] - sum(rec.losses[12:]) / 12) < 1e-5  # equal batches: the mean of the batch losses
    assert 0 <= rec.values[-1][2] <= 1 and rec.smooth_loss == rec.smooth_losses[-1]


def test_transformer_attention_mask_needs_no_host_sync():
    """The mask is built for every batch, so nothing asks the device whether it is all true (the meta
    device cannot answer, like a compiled graph)."""
    from learnkit.text.transformer import TransformerClassifier
    mask = torch.ones(2, 5, dtype=torch.bool, device="meta")
    for impl in ("sdpa", "eager"):
        fake = SimpleNamespace(encoder=SimpleNamespace(config=SimpleNamespace(_attn_implementation=impl)))
        out = TransformerClassifier._attn_mask(fake, mask, torch.float32)
        assert out.shape == (2, 1, 1, 5) and out.device.type == "meta"


def test_metric_functions_may_return_python_numbers():
    from learnkit.core.metrics import AvgMetric
    m = AvgMetric(lambda p, t: 0.5, name="half")
    m.reset()
    m.accumulate(torch.zeros(4, 2), torch.zeros(4))
    m.accumulate(torch.zeros(2, 2), torch.zeros(2))
    assert m.value == 0.5


def test_foreground_acc_keeps_its_sums_on_the_device():
    """ForegroundAcc read two ints back per batch (a sync each on a GPU)."""
    from learnkit import foreground_acc
    x = torch.randn(48, 4)
    y = torch.randint(0, 3, (48,))
    dls = DataLoaders.from_dsets(TensorDataset(x, y), TensorDataset(x, y), bs=8, device="cpu")
    spy = SyncsPerBatch()
    learn = Learner(dls, Spied(), loss_func=CrossEntropyLossFlat(), metrics=foreground_acc(ignore_index=0),
                    cbs=[spy], progress=False)
    learn.fit(1, lr=1e-2)
    assert sum(spy.per_batch) == 0, spy.per_batch
    pred = learn.get_preds()[0].argmax(1)
    keep = y != 0
    assert learn.recorder.final_record()["foreground_acc"] == pytest.approx(float((pred == y)[keep].float().mean()))
