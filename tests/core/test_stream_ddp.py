"""Streams and gradient accumulation under DDP (issue 27), two CPU processes under torchrun (gloo):

- a stream over 8 shards read by 2 workers per rank: each rank trains on disjoint items, together every item
  once per epoch, and the weights end identical;
- ``GradientAccumulation(n)`` all-reduces once per optimizer step (``no_sync`` for the other micro-batches,
  counted with a DDP comm hook) and ends with the weights of a batch ``n`` times larger.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import IterableDataset, TensorDataset

from learnkit import (Callback, DataLoaders, GradientAccumulation, Learner, MSELossFlat, make_loader, num_distrib,
                      rank_distrib)
from learnkit.core.sharding import split_shards

N_SHARDS, PER_SHARD = 8, 12


def _xy(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


class ShardStream(IterableDataset):
    """Items ``k * PER_SHARD ... (k + 1) * PER_SHARD - 1`` in shard ``k``; each rank/worker reads its shards."""

    def __init__(self):
        self.x, self.y = _xy(N_SHARDS * PER_SHARD)
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        shards = list(range(N_SHARDS))
        g = torch.Generator().manual_seed(self.epoch)
        shards = [shards[i] for i in torch.randperm(N_SHARDS, generator=g).tolist()]  # same order on every rank
        for k in split_shards(shards):
            for i in range(k * PER_SHARD, (k + 1) * PER_SHARD):
                yield self.x[i], self.y[i], torch.tensor(i)


class _Loss(nn.Module):
    def forward(self, pred, y, ids):
        return nn.functional.mse_loss(pred, y)


class Ids(Callback):
    order = 90

    def before_fit(self):
        self.epochs = []

    def before_train(self):
        self.epochs.append([])

    def after_batch(self):
        if self.learn.training:
            self.epochs[-1] += self.learn.yb[1].tolist()


class CountAllReduce(Callback):
    """Counts the gradient all-reduces of the DDP model (a comm hook around the default all-reduce)."""
    order = -20  # after the DistributedTrainer (-30) wrapped the model

    def before_fit(self):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
        self.calls = 0

        def hook(state, bucket):
            self.calls += 1
            return allreduce_hook(state, bucket)
        self.learn.ddp_model.register_comm_hook(None, hook)


def _worker(out: Path) -> None:
    rank = rank_distrib()
    torch.manual_seed(100 + rank)  # each rank its own initial weights: DDP must broadcast rank 0's
    x, y = _xy(32)
    valid = TensorDataset(x[:8], y[:8], torch.arange(8))
    dls = DataLoaders.from_dsets(ShardStream(), valid, bs=4, n_items=N_SHARDS * PER_SHARD, num_workers=2, device="cpu")
    ids = Ids()
    learn = Learner(dls, nn.Linear(3, 1), loss_func=_Loss(), lr=0.05, progress=False, cbs=[ids])
    learn.fit(2)
    stream = {"ids": ids.epochs, "w": learn.model.weight.detach().flatten().tolist(), "n_iter": len(dls.train),
              "values": learn.recorder.values}

    def ga_run(bs: int, n_acc: int | None):
        torch.manual_seed(7)
        x, y = _xy(64)
        data = TensorDataset(x, y)
        dls = DataLoaders(make_loader(data, bs=bs, shuffle=True, seed=3), make_loader(data, bs=16), device="cpu")
        count = CountAllReduce()
        cbs = [count] + ([GradientAccumulation(n_acc=n_acc)] if n_acc else [])
        learn = Learner(dls, nn.Linear(3, 1), loss_func=MSELossFlat(), opt_func=torch.optim.SGD, lr=0.1,
                        progress=False, cbs=cbs)
        learn.fit(2)
        return {"w": learn.model.weight.detach().flatten().tolist(), "allreduces": count.calls}
    res = {"world": num_distrib(), "stream": stream, "ga": ga_run(4, 16), "big": ga_run(16, None)}
    (out / f"result{rank}.json").write_text(json.dumps(res))


def test_streams_and_gradient_accumulation_under_two_ddp_processes(tmp_path):
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "LEARNKIT_DEVICE": "cpu",
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("LEARNKIT_DISTRIBUTED", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), "--worker", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    s0, s1 = r0["stream"], r1["stream"]
    assert s0["n_iter"] == s1["n_iter"] == 12  # 96 items / 2 ranks / bs 4
    for e in range(2):
        a, b = s0["ids"][e], s1["ids"][e]
        assert not set(a) & set(b), "the ranks read the same items"
        assert sorted(a + b) == list(range(N_SHARDS * PER_SHARD)), "an item was missed or read twice"
    assert s0["ids"][0] != s0["ids"][1]  # the shard order changes with the epoch
    assert s0["w"] == s1["w"] and s0["values"] == s1["values"]
    ga0, ga1, big0 = r0["ga"], r1["ga"], r0["big"]
    assert ga0["w"] == ga1["w"]
    # 64 items, 32 per rank: 8 micro-batches of 4 a epoch, 2 steps of 16; 2 epochs -> 4 all-reduces (one bucket)
    assert ga0["allreduces"] == 4 and big0["allreduces"] == 4
    assert torch.allclose(torch.tensor(ga0["w"]), torch.tensor(big0["w"]), atol=1e-6)


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker(Path(sys.argv[sys.argv.index("--worker") + 1]))
