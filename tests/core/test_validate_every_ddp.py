"""``fit(..., validate_every=N)`` under DDP (issue 27): two CPU processes under torchrun (gloo), one launch.

Each rank trains N steps of its own shard between validations (a shard of 46 items in batches of 8: six
batches, the last one short), all ranks validate together on the whole validation set, and:

- there are ``ceil(n_epoch * batches_per_shard / N)`` validation rounds, with identical recorded values and
  identical final weights on both ranks;
- each pass over the shards covers the training set (the sampler's one padded repeat aside) and reshuffles;
- ``SaveModelCallback(top_k=2)`` keeps the two best rounds and ``EarlyStoppingCallback`` counts its patience in
  rounds, on both ranks alike;
- a run that fails in the middle of a round and is resumed (``resume="auto"``, mid-round checkpoints) ends with
  the uninterrupted run's weights and recorded values on both ranks;
- over a stream whose shards give the ranks different numbers of batches (rank 0 four, rank 1 two), each rank
  still takes N steps per round (its stream starts again when it ends): no hang, the same weights.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import IterableDataset, TensorDataset

from learnkit import (Callback, CheckpointCallback, CrossEntropyLossFlat, DataLoaders, EarlyStoppingCallback, Learner,
                      SaveModelCallback, make_loader, num_distrib, rank_distrib)
from learnkit.core.process_group import distrib_barrier
from learnkit.core.sharding import split_shards

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="needs torch.distributed with the gloo backend (torchrun on the CPU)")

N_TRAIN, N_VALID, BS = 91, 37, 8  # odd sizes: the sampler pads; 46 items a rank -> 6 batches, the last of 6
PER_PASS = 6  # batches per rank per pass over the training set


def _data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VALID, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    ids = torch.arange(N_TRAIN + N_VALID)
    return TensorDataset(x[:N_TRAIN], y[:N_TRAIN], ids[:N_TRAIN]), TensorDataset(x[N_TRAIN:], y[N_TRAIN:], ids[N_TRAIN:])


class _Loss(nn.Module):
    def __init__(self):
        super().__init__()
        self.ce = CrossEntropyLossFlat()

    def forward(self, pred, y, ids):
        return self.ce(pred, y)


class Ids(Callback):
    """The item ids of every training batch, and of every validation round (after gathering)."""

    order = 55

    def before_fit(self):
        self.train, self.valid = [], []

    def before_validate(self):
        self.valid.append([])

    def after_batch(self):
        if self.learn.training:
            self.train.append(self.learn.yb[1].tolist())
        else:
            self.valid[-1] += self.learn.yb[1].tolist()


class UnevenStream(IterableDataset):
    """3 shards of 8 items (ids 0..23) over 2 ranks: rank 0 reads shards 0 and 2 (4 batches of 4), rank 1 shard 1
    (2 batches)."""

    def __init__(self):
        self.x, self.y = _data()[0].tensors[:2]
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):
        for k in split_shards(range(3)):
            for i in range(8 * k, 8 * k + 8):
                yield self.x[i], self.y[i], torch.tensor(i)


class Crash(Exception):
    pass


class CrashAt(Callback):
    def __init__(self, epoch: int, it: int):
        self.at = (epoch, it)

    def before_batch(self):
        if self.learn.training and (self.learn.epoch, self.learn.iter) == self.at:
            raise Crash()


def _learner(path: Path, cbs: list, seed: int) -> Learner:
    rank = rank_distrib()
    torch.manual_seed(seed + rank)  # each rank its own initial weights, shuffling seed and dropout stream
    train, valid = _data()
    dls = DataLoaders(make_loader(train, bs=BS, shuffle=True, seed=seed + rank), make_loader(valid, bs=5), device="cpu")
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
    return Learner(dls, model, loss_func=_Loss(), path=path, progress=False, cbs=cbs)


def _weights(learn: Learner) -> list[list[float]]:
    return [v.flatten().tolist() for v in learn.model.state_dict().values()]


def _worker(out: Path) -> None:
    rank = rank_distrib()
    ids, top = Ids(), SaveModelCallback(fname="top", top_k=2)
    learn = _learner(out / "main", [ids, top], seed=10)
    learn.fit(3, lr=2e-2, validate_every=4)  # 3 passes of 6 steps = 18 steps -> 5 rounds of 4
    res: dict = {"world": num_distrib(), "values": learn.recorder.values, "n_losses": len(learn.recorder.losses),
                 "train_ids": ids.train, "valid_ids": ids.valid, "weights": _weights(learn),
                 "top": [[v, e] for v, e, _ in top.top_files], "train_after": type(learn.dls[0]).__name__}
    stopper = _learner(out / "stop", [EarlyStoppingCallback(patience=1, min_delta=10.0)], seed=10)  # never improves
    stopper.fit(5, lr=2e-2, validate_every=3)
    res["stopped"] = [stopper.early_stopping.stopped_epoch, len(stopper.recorder.losses), len(stopper.recorder.values)]

    stream, ids = UnevenStream(), Ids()
    torch.manual_seed(rank)
    dls = DataLoaders.from_dsets(stream, _data()[1], bs=4, n_items=24, device="cpu")  # 3 steps per rank and epoch
    streamed = Learner(dls, nn.Linear(4, 2), loss_func=_Loss(), lr=2e-2, path=out / "stream", progress=False, cbs=[ids])
    streamed.fit(2, validate_every=3)  # 6 steps -> 2 rounds of 3
    res["stream"] = {"ids": ids.train, "values": streamed.recorder.values, "weights": _weights(streamed),
                     "epochs": stream.epochs}

    def resumable(path: Path, extra: list) -> Learner:
        learn = _learner(path, [CheckpointCallback(every_batches=2), *extra], seed=20)
        learn.fit(2, lr=2e-2, validate_every=5, resume="auto")  # 12 steps -> 3 rounds of 5
        return learn
    ref = resumable(out / "ref", [])
    try:
        resumable(out / "run", [CrashAt(1, 4)])  # both ranks fail in round 1, after the checkpoint of its 4th batch
        raise AssertionError("the run did not fail")
    except Crash:
        pass
    distrib_barrier()
    resumed = resumable(out / "run", [])
    res["resume"] = {"at": list(resumed.checkpoint.resumed_at), "same_weights": _weights(resumed) == _weights(ref),
                     "same_values": resumed.recorder.values == ref.recorder.values, "values": ref.recorder.values}
    (out / f"result{rank}.json").write_text(json.dumps(res))


def test_validate_every_under_two_ddp_processes(tmp_path):
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "LEARNKIT_DEVICE": "cpu",
           "LEARNKIT_SMALL_DATA_WARNINGS": "0",
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("LEARNKIT_DISTRIBUTED", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), "--worker", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # 5 rounds of 4 steps, each ending with a validation; the same numbers and weights on both ranks
    assert len(r0["values"]) == 5 and r0["n_losses"] == r1["n_losses"] == 20
    assert r0["values"] == r1["values"] and r0["weights"] == r1["weights"]
    assert r0["train_after"] == r1["train_after"] == "DataLoader"  # the shard's StepsLoader is gone after the fit
    for r in (r0, r1):  # every round validates every item once (gathered from both ranks)
        assert len(r["valid_ids"]) == 5
        assert all(sorted(v) == list(range(N_TRAIN, N_TRAIN + N_VALID)) for v in r["valid_ids"])
    # the stream continues across rounds: each pass of 6 batches per rank covers the set, then reshuffles
    passes = []
    for p in range(3):
        a = [i for b in r0["train_ids"][p * PER_PASS:(p + 1) * PER_PASS] for i in b]
        b = [i for b in r1["train_ids"][p * PER_PASS:(p + 1) * PER_PASS] for i in b]
        assert len(a) == len(b) == 46 and set(a) | set(b) == set(range(N_TRAIN)) and len(set(a) & set(b)) <= 1
        passes.append(a)
    assert passes[0] != passes[1] != passes[2]
    # trackers at the round grain: the two best rounds (rank 0 wrote their files), early stopping after 2 rounds
    best2 = sorted(range(5), key=lambda i: r0["values"][i][1])[:2]
    assert r0["top"] == r1["top"] and [e for _, e in r0["top"]] == best2
    saved = sorted(p.name for p in (tmp_path / "main" / "models").glob("top_*.pth"))
    assert saved == sorted(f"top_{i}.pth" for i in best2)
    assert r0["stopped"] == r1["stopped"] == [1, 6, 2]
    # resumed in the middle of round 1 (after its 4th batch): the uninterrupted run's weights and values
    for r in (r0, r1):
        assert r["resume"]["at"] == [1, 4] and r["resume"]["same_weights"] and r["resume"]["same_values"]
    assert r0["resume"]["values"] == r1["resume"]["values"] and len(r0["resume"]["values"]) == 3
    # a stream with 4 batches on rank 0 and 2 on rank 1: 3 steps a round on each, rank 1 starting its stream again
    s0, s1 = r0["stream"], r1["stream"]
    assert len(s0["ids"]) == len(s1["ids"]) == 6 and len(s0["values"]) == 2
    assert s0["ids"][:4] == [[0, 1, 2, 3], [4, 5, 6, 7], [16, 17, 18, 19], [20, 21, 22, 23]]
    assert s1["ids"] == [[8, 9, 10, 11], [12, 13, 14, 15]] * 3 and s1["epochs"] == [0, 1, 2]  # a new epoch each pass
    assert s0["values"] == s1["values"] and s0["weights"] == s1["weights"]


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker(Path(sys.argv[sys.argv.index("--worker") + 1]))
