"""A ``torchmetrics.Metric`` instance passed as a learnkit metric: reset, update and compute per epoch, named by
its class, equal to learnkit's own metrics, and counted once per item under DDP (the learner gathers the
validation predictions on every rank already, so the metric must not synchronise them again)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

torchmetrics = pytest.importorskip("torchmetrics")

from learnkit import (CrossEntropyLossFlat, DataLoaders, F1Score, Learner, accuracy, as_metric,  # noqa: E402
                      make_loader)
from learnkit.core.metrics import TorchMetric  # noqa: E402

N_VALID = 37  # odd: under DDP the sampler pads a shard, and the padding must not count


class ItemCount(torchmetrics.Metric):
    """The number of validation items it saw: ``N_VALID`` on every rank when nothing is counted twice."""

    def __init__(self):
        super().__init__()
        self.add_state("n", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.n += target.shape[0]

    def compute(self) -> torch.Tensor:
        return self.n.float()


def _learner(seed: int = 0) -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(91 + N_VALID, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    dls = DataLoaders(make_loader(TensorDataset(x[:91], y[:91]), bs=8, shuffle=True, seed=seed),
                      make_loader(TensorDataset(x[91:], y[91:]), bs=5))
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    metrics = [accuracy, torchmetrics.classification.MulticlassAccuracy(num_classes=2, average="micro"),
               F1Score(average="macro"),
               torchmetrics.classification.MulticlassF1Score(num_classes=2, average="macro"), ItemCount()]
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=metrics, progress=False)


def test_a_torchmetrics_metric_is_reset_each_epoch_and_matches_learnkits():
    learn = _learner()
    learn.fit(2, lr=1e-2)
    names = learn.recorder.metric_names
    assert names[3:8] == ["accuracy", "MulticlassAccuracy", "f1_score", "MulticlassF1Score", "ItemCount"]
    for row in learn.recorder.values:
        acc, tm_acc, f1, tm_f1, count = row[2:7]
        assert tm_acc == pytest.approx(acc, abs=1e-6) and tm_f1 == pytest.approx(f1, abs=1e-6)
        assert count == N_VALID  # reset every epoch, not accumulated across them


def test_as_metric_wraps_torchmetrics_and_rejects_its_classes():
    m = as_metric(torchmetrics.MeanSquaredError())
    assert isinstance(m, TorchMetric) and m.name == "MeanSquaredError" and m.higher_is_better is False
    m.reset()
    m.accumulate(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0]))
    m.accumulate(torch.tensor([2.0]), torch.tensor([0.0]))
    assert m.value == pytest.approx(8 / 3)
    assert not m.metric.sync_on_compute
    with pytest.raises(TypeError, match=r"pass an instance, e.g. metrics=MeanSquaredError\(\)"):
        as_metric(torchmetrics.MeanSquaredError)
    multi = as_metric(torchmetrics.classification.MulticlassAccuracy(num_classes=3, average="none"))
    multi.accumulate(torch.eye(3), torch.arange(3))
    with pytest.raises(ValueError, match="shape \\[3\\].*average='macro'"):
        multi.value


def _worker(out: Path) -> None:
    rank = int(os.environ["RANK"])
    learn = _learner(seed=rank)
    learn.fit(1, lr=1e-2)
    (out / f"values{rank}.json").write_text(json.dumps(learn.recorder.values))


def test_under_ddp_each_item_counts_once(tmp_path):
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "LEARNKIT_DEVICE": "cpu",
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("LEARNKIT_DISTRIBUTED", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), "--worker", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    v0, v1 = (json.loads((tmp_path / f"values{r}.json").read_text()) for r in (0, 1))
    assert v0 == v1
    acc, tm_acc, f1, tm_f1, count = v0[0][2:7]
    assert count == N_VALID  # synchronising the already gathered states again would give 2 * N_VALID
    assert tm_acc == pytest.approx(acc, abs=1e-6) and tm_f1 == pytest.approx(f1, abs=1e-6)


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker(Path(sys.argv[sys.argv.index("--worker") + 1]))
