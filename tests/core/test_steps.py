"""Step control (issue 27): ShortEpochCallback, fit(max_steps=), fit(validate_every=) with the trackers at that
grain, SaveModelCallback(top_k=), and StepsLoader's stream across epochs and through a resume."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from learnkit import (CheckpointCallback, CrossEntropyLossFlat, DataLoaders, EarlyStoppingCallback, Learner,
                      SaveModelCallback, ShortEpochCallback, StepsLoader, accuracy)
from learnkit.core.callback import Callback


class Seen(Callback):
    order = 90

    def before_fit(self):
        self.train, self.valid = [], []

    def after_batch(self):
        (self.train if self.learn.training else self.valid).append(self.learn.yb[1].tolist())


class _Loss(nn.Module):
    def __init__(self):
        super().__init__()
        self.ce = CrossEntropyLossFlat()

    def forward(self, pred, y, ids):
        return self.ce(pred, y)


def _learner(path, cbs=(), seed=0, n=100, bs=10):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n + 20, 2, generator=g)
    y = (x.sum(1) > 0).long()
    ids = torch.arange(n + 20)
    dls = DataLoaders.from_dsets(TensorDataset(x[:n], y[:n], ids[:n]), TensorDataset(x[n:], y[n:], ids[n:]), bs=bs,
                                 device="cpu")
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
    return Learner(dls, model, loss_func=_Loss(), path=path, progress=False, cbs=list(cbs))


def test_short_epoch_runs_a_fraction_of_each_phase(tmp_path):
    seen = Seen()
    learn = _learner(tmp_path, [seen])
    learn.fit(2, cbs=ShortEpochCallback(pct=0.3))  # 10 training batches, 1 validation batch (bs 20)
    assert len(seen.train) == 2 * 3 and len(seen.valid) == 2 and len(learn.recorder.values) == 2
    seen2 = Seen()
    _learner(tmp_path, [seen2]).fit(1, cbs=ShortEpochCallback(pct=0.01, short_valid=False))
    assert len(seen2.train) == 1 and len(seen2.valid) == 1
    with pytest.raises(ValueError, match="pct is the fraction"):
        ShortEpochCallback(pct=0)


def test_max_steps_stops_and_the_schedule_spans_those_steps(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(50, lr=1e-2, max_steps=25)
    assert len(learn.recorder.losses) == 25 and len(learn.recorder.values) == 3  # 10 + 10 + 5, each validated
    cycle = _learner(tmp_path)
    from learnkit import StepLimitCallback
    cycle.fit_one_cycle(50, 1e-2, cbs=StepLimitCallback(25))
    lrs = cycle.recorder.lrs
    assert len(lrs) == 25 and lrs.index(max(lrs)) == 6 and lrs[-1] == pytest.approx(1e-2 / 1e5)  # a full cycle
    with pytest.raises(ValueError, match="max_steps"):
        learn.fit(1, max_steps=0)


def test_validate_every_gives_rows_trackers_and_a_continuous_stream(tmp_path):
    seen = Seen()
    es = EarlyStoppingCallback(patience=100)
    learn = _learner(tmp_path, [seen, es])
    learn.fit(3, lr=1e-2, validate_every=4)  # 30 steps -> 8 rounds of 4 (32 steps)
    assert len(learn.recorder.values) == 8 and len(learn.recorder.losses) == 32 and len(seen.valid) == 8
    ids = [i for b in seen.train for i in b]
    for e in range(3):  # each data epoch (10 batches) sees every item once, across rounds
        assert sorted(ids[e * 100:(e + 1) * 100]) == list(range(100))
    assert ids[:100] != ids[100:200]  # reshuffled each pass
    assert learn.dls.train is not None and not isinstance(learn.dls.train, StepsLoader)  # restored after the fit
    stopper = _learner(tmp_path, [EarlyStoppingCallback(patience=1, min_delta=10.0)])  # never improves by 10
    stopper.fit(5, lr=1e-2, validate_every=3)
    assert stopper.early_stopping.stopped_epoch == 1 and len(stopper.recorder.losses) == 6  # two rounds of 3 steps


def test_save_model_top_k_keeps_the_k_best(tmp_path):
    learn = _learner(tmp_path)
    cb = SaveModelCallback(fname="top", top_k=2, monitor="valid_loss")
    learn.fit(6, lr=5e-2, cbs=cb, validate_every=5)
    values = [row[1] for row in learn.recorder.values]
    best2 = sorted(range(len(values)), key=lambda i: values[i])[:2]
    files = sorted(p.name for p in (tmp_path / "models").glob("top_*.pth"))
    assert files == sorted(f"top_{i}.pth" for i in best2)
    assert [e for _, e, _ in cb.top_files] == best2
    best = torch.load(tmp_path / "models" / f"top_{best2[0]}.pth", weights_only=True)["model"]
    assert all(torch.equal(best[k], v) for k, v in learn.model.state_dict().items())  # the best loaded back
    with pytest.raises(ValueError, match="top_k"):
        SaveModelCallback(top_k=0)


class Crash(Exception):
    pass


class CrashAt(Callback):
    def __init__(self, epoch, it):
        self.at = (epoch, it)

    def before_batch(self):
        if self.learn.training and (self.learn.epoch, self.learn.iter) == self.at:
            raise Crash()


def test_validate_every_resumes_mid_round_bit_identical(tmp_path):
    def run(path, extra=(), seed=0):
        np.random.seed(seed)
        random.seed(seed)
        learn = _learner(path, [CheckpointCallback(every_batches=2), *extra], seed=seed)
        learn.fit(2, lr=1e-2, validate_every=7, resume="auto")
        return learn
    ref = run(tmp_path / "ref")
    with pytest.raises(Crash):
        run(tmp_path / "run", [CrashAt(1, 5)])  # round 1 (steps 7..13): written after its 4th batch
    resumed = run(tmp_path / "run", seed=7)
    assert resumed.checkpoint.resumed_at == (1, 4)
    assert all(torch.equal(a, b) for a, b in zip(ref.model.state_dict().values(), resumed.model.state_dict().values()))
    assert resumed.recorder.values == ref.recorder.values


def test_steps_loader_state_round_trip():
    from torch.utils.data import DataLoader
    dl = DataLoader(list(range(10)), batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    sl = StepsLoader(dl, 3)
    first = [b.tolist() for b in sl]
    state = sl.state_dict()
    rest = [[b.tolist() for b in sl] for _ in range(3)]
    again = StepsLoader(DataLoader(list(range(10)), batch_size=2, shuffle=True, generator=torch.Generator()), 3)
    again.load_state_dict(state)
    assert [[b.tolist() for b in again] for _ in range(3)] == rest and len(first) == 3


def test_steps_loader_tells_each_pass_its_epoch_from_first_epoch():
    class Epochs:  # a loader of 2 batches that records the epochs set_epoch gives it
        def __init__(self):
            self.seen = []

        def set_epoch(self, epoch):
            self.seen.append(epoch)

        def __iter__(self):
            return iter([0, 1])

        def __len__(self):
            return 2

    sl = StepsLoader(Epochs(), 3, first_epoch=5)  # DistributedTrainer passes the epochs of the earlier fits
    assert [list(sl) for _ in range(2)] == [[0, 1, 0], [1, 0, 1]] and sl.dl.seen == [5, 6, 7]
    again = StepsLoader(Epochs(), 3, first_epoch=5)
    again.load_state_dict(sl.state_dict())  # at the end of the third pass: its epoch again, then a fourth pass
    assert again.dl.seen == [7] and list(again) == [0, 1, 0]
    with pytest.raises(ValueError, match="first_epoch"):
        StepsLoader(Epochs(), 3, first_epoch=-1)
