"""DDP through torchrun on the CPU (gloo), and the single-process behaviour of the distributed helpers.

The two-process test runs this very file under ``python -m torch.distributed.run --nproc_per_node=2``
(see `_worker`): each rank has its own initial weights and its own loader seed, so only real
synchronisation can make them agree.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from learnkit import (Callback, CrossEntropyLossFlat, CSVLogger, DataLoaders, DistributedDL, Learner,
                      SaveModelCallback, accuracy, is_rank0, make_loader, num_distrib, rank_distrib)

N_TRAIN, N_VALID = 91, 37  # both odd: the DistributedSampler must pad, and the padding must not count


def _data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(0)  # the same data on every rank
    x = torch.randn(N_TRAIN + N_VALID, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    ids = torch.arange(N_TRAIN + N_VALID)
    return TensorDataset(x[:N_TRAIN], y[:N_TRAIN], ids[:N_TRAIN]), TensorDataset(x[N_TRAIN:], y[N_TRAIN:], ids[N_TRAIN:])


class _Loss(nn.Module):
    """Cross-entropy on the first target; the second target is the item's id (for bookkeeping)."""

    def __init__(self):
        super().__init__()
        self.ce = CrossEntropyLossFlat()
        self.activation = self.ce.activation

    def forward(self, pred, y, ids):
        return self.ce(pred, y)


class _IdTracker(Callback):
    """Records the item ids each phase saw, per epoch (after the DistributedTrainer gathered them)."""

    order = 55

    def before_fit(self):
        self.train, self.valid = [], []

    def before_train(self):
        self.train.append([])

    def before_validate(self):
        self.valid.append([])

    def after_batch(self):
        (self.train if self.learn.training else self.valid)[-1].extend(self.learn.yb[1].tolist())


def _record_writes(under: Path) -> list[str]:
    """Paths under ``under`` that this process opens for writing, renames into or creates (an audit hook)."""
    writes: list[str] = []
    root = str(under)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            w = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(isinstance(flags, int) and flags & write_flags)
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.truncate"):
            path, w = args[1] if event == "os.rename" else args[0], True  # os.rename/os.replace: (src, dst, ...)
        else:
            return
        if w and isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(root):
            writes.append(os.fsdecode(path))

    sys.addaudithook(hook)
    return writes


def _worker(out: Path) -> None:
    """One rank of the two-process run: train, then dump what the test checks."""
    from safetensors.torch import save_file

    rank = int(os.environ["RANK"])
    writes = _record_writes(out / "run")
    torch.manual_seed(1000 + rank)  # each rank its own initial weights...
    train, valid = _data()
    # the device: $LEARNKIT_DEVICE (cpu in the CPU test), else this rank's GPU (tests/gpu/test_gpu.py)
    dls = DataLoaders(make_loader(train, bs=8, shuffle=True, seed=rank),  # ...and its own shuffling
                      make_loader(valid, bs=5))
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    init = torch.cat([p.detach().flatten() for p in model.parameters()])
    tracker = _IdTracker()
    learn = Learner(dls, model, loss_func=_Loss(), metrics=accuracy, path=out / "run",  # the same folder for all
                    cbs=[CSVLogger(), SaveModelCallback(fname="best"), tracker])
    learn.fit_one_cycle(3, 2e-2)
    learn.save("final")
    probs, targs = learn.get_preds()
    train_targs = learn.get_preds(ds_idx=0)[1]
    local_full = learn.validate()  # unsharded, on this rank alone
    save_file({k: v.contiguous() for k, v in learn.model.state_dict().items()}, str(out / f"weights{rank}.safetensors"))
    res = {"rank": rank, "world": num_distrib(), "rank_distrib": rank_distrib(), "is_rank0": is_rank0(),
           "distributed": learn.distributed_trainer is not None, "ddp_after_fit": learn.ddp_model is not None,
           "init_sum": float(init.sum()), "values": learn.recorder.values, "best": learn.save_model.best,
           "train_ids": tracker.train, "valid_ids": tracker.valid, "targs": targs.tolist(), "train_targs": train_targs.tolist(),
           "probs": probs.tolist(), "validate": local_full, "writes": sorted(set(writes))}
    with learn.removed_cbs([learn.csv_logger]):  # each rank sees its own losses...
        res["lr_find"] = list(learn.lr_find(num_it=12, show_plot=False))
    (out / f"result{rank}.json").write_text(json.dumps(res))


def _torchrun_env() -> dict[str, str]:
    """The environment of a CPU torchrun job: gloo, no bars, one thread, this checkout importable."""
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "LEARNKIT_DEVICE": "cpu",
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("LEARNKIT_DISTRIBUTED", None)
    return env


def test_ddp_two_cpu_processes_agree(tmp_path):
    env = _torchrun_env()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), "--worker", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1))
    from safetensors.torch import load_file
    w0, w1 = (load_file(str(tmp_path / f"weights{r}.safetensors")) for r in (0, 1))

    assert (r0["world"], r1["world"]) == (2, 2) and (r0["rank_distrib"], r1["rank_distrib"]) == (0, 1)
    assert (r0["is_rank0"], r1["is_rank0"]) == (True, False)
    assert r0["distributed"] and r1["distributed"] and not r0["ddp_after_fit"] and not r1["ddp_after_fit"]
    assert r0["init_sum"] != r1["init_sum"]  # the ranks really started apart
    # identical weights and buffers (BatchNorm running statistics included) on both ranks
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # every logged number is the same on both ranks (training loss averaged, validation gathered)
    assert r0["values"] == r1["values"] and len(r0["values"]) == 3
    assert r0["values"][-1][2] > 0.8  # accuracy: it learned

    # validation: every item exactly once, on both ranks, every epoch (the sampler's padding dropped)
    for r in (r0, r1):
        assert len(r["valid_ids"]) == 3
        for ids in r["valid_ids"]:
            assert sorted(ids) == list(range(N_TRAIN, N_TRAIN + N_VALID))
    # training: the ranks' shards cover the set (one padded repeat), differ, and reshuffle each epoch
    for e in range(3):
        a, b = r0["train_ids"][e], r1["train_ids"][e]
        assert len(a) == len(b) == math.ceil(N_TRAIN / 2)
        assert set(a) | set(b) == set(range(N_TRAIN)) and len(set(a) & set(b)) <= 1
    assert r0["train_ids"][0] != r0["train_ids"][1]

    # get_preds: sharded, gathered back in dataset order, without padding
    _, valid = _data()
    assert r0["targs"] == r1["targs"] == valid.tensors[1].tolist()
    assert len(r0["probs"]) == N_VALID and r0["probs"] == r1["probs"]
    # on the training set too: an unshuffled copy of its loader, every item once (issue 15)
    assert r0["train_targs"] == r1["train_targs"] == _data()[0].tensors[1].tolist()
    # the gathered validation loss of the best epoch is the loss over the whole set on one process
    assert r0["best"] == r1["best"] and abs(r0["validate"][0] - r0["best"]) < 1e-5
    assert abs(r0["validate"][0] - min(v[1] for v in r0["values"])) < 1e-5

    # ...but every rank suggests the same learning rate (the curve is averaged over ranks)
    assert r0["lr_find"] == r1["lr_find"]

    # only rank 0 wrote files (both used the same folder; rank 1 loaded the best weights rank 0 saved)
    run = tmp_path / "run"
    assert r1["writes"] == []
    written = {Path(p).name for p in r0["writes"]}
    assert {"history.csv", "best.pth", "final.pth"} <= written, written
    assert (run / "models" / "best.pth").is_file() and (run / "models" / "final.pth").is_file()
    assert len((run / "history.csv").read_text().splitlines()) == 4


# --- single process --------------------------------------------------------------------------------------
def test_single_process_is_not_distributed(tmp_path, monkeypatch):
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(v, raising=False)
    assert (rank_distrib(), num_distrib(), is_rank0()) == (0, 1, True)
    train, valid = _data()
    dls = DataLoaders.from_dsets(TensorDataset(*train.tensors[:2]), TensorDataset(*valid.tensors[:2]), bs=8,
                                 device="cpu")
    learn = Learner(dls, nn.Linear(4, 2), loss_func=CrossEntropyLossFlat(), path=tmp_path, progress=False)
    assert getattr(learn, "distributed_trainer", None) is None and learn.ddp_model is None
    assert learn.to_distributed() is learn and getattr(learn, "distributed_trainer", None) is None
    with learn.distrib_ctx():
        learn.fit(1)
    assert learn.save("m").is_file()  # rank 0 of nothing: writes as usual


def test_distributed_dl_shards_cover_the_set_once():
    ds = TensorDataset(torch.arange(11))
    dl = make_loader(ds, bs=4, shuffle=False, device="cpu")
    shards = [DistributedDL(dl, rank=r, world_size=3, shuffle=False) for r in range(3)]
    seen = [[int(v) for (b,) in s for v in b] for s in shards]
    assert [len(s) for s in shards] == [1, 1, 1]
    assert [len(x) for x in seen] == [4, 4, 4]  # ceil(11 / 3) each: one padded repeat
    assert seen[0] == [0, 3, 6, 9] and seen[1] == [1, 4, 7, 10] and seen[2] == [2, 5, 8, 0]  # r, r + W, ...
    # shuffled shards: the same permutation on every rank (same seed), a new one per epoch
    sh = [DistributedDL(make_loader(ds, bs=4, shuffle=True, seed=r, device="cpu"), r, 2, shuffle=True, seed=7)
          for r in range(2)]
    epoch0 = [[int(v) for (b,) in s for v in b] for s in sh]
    assert set(epoch0[0]) | set(epoch0[1]) == set(range(11))
    for s in sh:
        s.set_epoch(1)
    assert [[int(v) for (b,) in s for v in b] for s in sh] != epoch0


def test_distributed_dl_batched_rows_for_tensor_loaders():
    class RowLoader:  # the shape of learnkit.collab.TensorLoader: dataset + batch_size, no collate_fn
        def __init__(self, *tensors, bs):
            self.dataset, self.batch_size = TensorDataset(*tensors), bs

    x, y = torch.arange(10), torch.arange(10) * 2.0
    ddl = DistributedDL(RowLoader(x, y, bs=3), rank=1, world_size=2, shuffle=False)
    batches = list(ddl)
    assert [b[0].tolist() for b in batches] == [[1, 3, 5], [7, 9]]
    assert all(torch.equal(b[1], b[0] * 2.0) for b in batches)  # rows stay together
    with pytest.raises(TypeError, match="map-style"):
        DistributedDL([(x, y)], rank=0, world_size=2, shuffle=False)


def test_compile_and_channels_last_keep_weight_names():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,))
    dls = DataLoaders.from_dsets(TensorDataset(x, y), TensorDataset(x, y), bs=8, device="cpu")
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), progress=False)
    keys = list(learn.model.state_dict())
    learn.to_channels_last()
    assert learn.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    learn.compile(backend="eager")  # dynamo tracing without a C++ toolchain
    learn.fit(1)
    assert list(learn.model.state_dict()) == keys
    assert learn.model._compiled_call_impl is not None
    assert math.isfinite(learn.recorder.values[-1][1])


def test_distributed_dl_shards_custom_batch_samplers():
    """Text loaders batch with a `BucketBatchSampler` (``bs``, no ``batch_size``): one lookup serves every loader."""
    from learnkit.core.sharding import loader_batch_size
    from learnkit.text.batching import BucketBatchSampler, PadCollate, TextDataset
    ids = [[i + 1] * (1 + i % 5) for i in range(13)]
    ds = TextDataset([str(i) for i in range(13)], ids, labels=list(range(13)))
    dl = torch.utils.data.DataLoader(ds, batch_sampler=BucketBatchSampler(ds.lengths, bs=4), collate_fn=PadCollate(0))
    assert loader_batch_size(dl) == 4
    # training: the bucketing sampler's own batches, dealt to the ranks (as many batches on each)
    shards = [DistributedDL(dl, rank=r, world_size=2, shuffle=True, seed=3) for r in range(2)]
    for epoch in (0, 1):
        for s in shards:
            s.set_epoch(epoch)
        batches = [[b[1].tolist() for b in s] for s in shards]
        assert len(batches[0]) == len(batches[1]) == len(shards[0]) == 2
        ref = BucketBatchSampler(ds.lengths, bs=4, seed=3 + epoch)  # what every rank drew this epoch
        assert [x for pair in zip(*batches) for x in pair] == list(ref)
    # inference: item by item, every item once over the ranks (then gathered in dataset order)
    shards = [DistributedDL(dl, rank=r, world_size=2, shuffle=False, drop_last=False) for r in range(2)]
    seen = [[int(v) for b in s for v in b[1]] for s in shards]
    assert len(seen[0]) == len(seen[1]) == 7 and set(seen[0]) | set(seen[1]) == set(range(13))


def test_distributed_dl_reads_tabular_rows_a_batch_at_a_time():
    """A `TabularLoader` shard fetches each batch with one index tensor, not row by row."""
    from learnkit.tabular import TabularLoader, TabularTensors

    class Counting(TabularTensors):
        calls = 0

        def __getitem__(self, i):
            Counting.calls += 1
            return super().__getitem__(i)

    n = 21
    t = Counting(torch.arange(n)[:, None], torch.arange(n, dtype=torch.float)[:, None], torch.arange(n))
    ddl = DistributedDL(TabularLoader(t, bs=4, shuffle=True), rank=0, world_size=2, shuffle=True, seed=0)
    batches = list(ddl)
    assert Counting.calls == len(batches) == 3
    assert all(torch.equal(b[0][:, 0], b[2]) for b in batches)  # rows stay together


def test_get_preds_on_the_training_set_is_in_dataset_order():
    """`get_preds(ds_idx=0)` reads an unshuffled copy of the training loader without drop_last."""
    x = torch.randn(23, 4)
    y = torch.arange(23) % 2
    dls = DataLoaders(make_loader(TensorDataset(x, y), bs=5, shuffle=True, drop_last=True, device="cpu"),
                      make_loader(TensorDataset(x, y), bs=5, device="cpu"), device="cpu")
    learn = Learner(dls, nn.Linear(4, 2), loss_func=CrossEntropyLossFlat(), progress=False)
    probs, targs = learn.get_preds(ds_idx=0)
    assert targs.tolist() == y.tolist() and probs.shape == (23, 2)
    assert torch.allclose(probs, learn.model(x).softmax(1), atol=1e-6)
    assert len(list(dls.train)) == 4  # the training loader itself is unchanged
    loss = learn.validate(ds_idx=0)[0]
    assert abs(loss - float(nn.functional.cross_entropy(learn.model(x), y).detach())) < 1e-5
    # a plain list of batches (any iterable with len is a loader) is read as it is
    dls.valid = [(x[:10], y[:10]), (x[10:], y[10:])]
    assert learn.get_preds()[1].tolist() == y.tolist()


def test_get_preds_on_a_bucketed_text_training_set_is_in_dataset_order():
    from learnkit.text import TextDataLoaders, text_classifier_learner
    texts = [" ".join(["good"] * (1 + i % 7)) if i % 2 else " ".join(["bad"] * (1 + i % 5)) for i in range(30)]
    import pandas as pd
    df = pd.DataFrame({"text": texts, "label": ["pos" if i % 2 else "neg" for i in range(30)],
                       "is_valid": [i % 5 == 0 for i in range(30)]})
    dls = TextDataLoaders.from_df(df, valid_col="is_valid", tok="words", min_freq=1, bs=4, device="cpu")
    learn = text_classifier_learner(dls, "lstm", progress=False, config={"emb_dim": 4, "hidden": 4, "head_hidden": 4})
    targs = learn.get_preds(ds_idx=0)[1]
    assert targs.tolist() == dls.train.dataset.labels


class _Boom(Callback):
    """Raises on rank 1 in the middle of the second epoch, while rank 0 goes on training."""

    def before_batch(self):
        if rank_distrib() == 1 and (self.learn.epoch, self.learn.iter) == (1, 2):
            raise RuntimeError("boom on rank 1")


def _crash_worker() -> None:
    train, valid = _data()
    dls = DataLoaders(make_loader(train, bs=8, shuffle=True), make_loader(valid, bs=5))
    learn = Learner(dls, nn.Linear(4, 2), loss_func=_Loss(), cbs=[_Boom()])
    if os.environ.get("LEARNKIT_DISTRIBUTED") == "0":  # explicit: the block's exit must not wait for the peer
        with learn.distrib_ctx():
            learn.fit(50)
    else:
        learn.fit(50)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun's workers live in their own process groups)."""
    try:
        import psutil
        procs = psutil.Process(pid).children(recursive=True) + [psutil.Process(pid)]
        for p in procs:
            p.kill()
    except ImportError:
        os.killpg(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["torchrun", "distrib_ctx"])
def test_a_raising_rank_ends_the_job_promptly(how):
    """A crash on one rank must not become a hang (a barrier against the dead peer at exit): the job ends
    with a non-zero status and the rank's traceback in well under a minute."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), "--crash"]
    env = _torchrun_env()
    if how == "distrib_ctx":
        env["LEARNKIT_DISTRIBUTED"] = "0"
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: a hung job is killed whole
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        proc.communicate(timeout=30)
        pytest.fail("the job hung after rank 1 raised")
    assert time.monotonic() - t0 < 60
    assert proc.returncode != 0
    assert "boom on rank 1" in out and "Traceback" in out


def _rng_worker(out: Path) -> None:
    """Save the random states (rank 0 writes the file), draw, scramble, restore from the file, draw again."""
    import random

    import numpy as np

    from learnkit.core.callbacks.checkpoint import _rng_state, _set_rng_state
    from learnkit.core.export import load_tree, save_tree
    from learnkit.core.process_group import distrib_barrier, setup_distrib

    setup_distrib("gloo")
    rank = rank_distrib()
    torch.manual_seed(100 + rank)
    np.random.seed(rank)
    random.seed(rank)
    save_tree(out / "rng.safetensors", _rng_state([]), {"format": "test"})
    draw = lambda: [torch.rand(2).tolist(), float(np.random.rand()), random.random()]  # noqa: E731
    expected = draw()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    distrib_barrier()
    _set_rng_state(load_tree(out / "rng.safetensors")[1], [], out)
    (out / f"rng{rank}.json").write_text(json.dumps({"expected": expected, "got": draw()}))


def test_checkpoint_rng_states_are_per_rank(tmp_path):
    """Each rank resumes its own random streams (dropout, augmentation), not rank 0's."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), "--rng", str(tmp_path)]
    proc = subprocess.run(cmd, env=_torchrun_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"rng{r}.json").read_text()) for r in (0, 1))
    assert r0["expected"] != r1["expected"]  # the ranks' streams differ...
    assert r0["got"] == r0["expected"] and r1["got"] == r1["expected"]  # ...and each gets its own back


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker(Path(sys.argv[sys.argv.index("--worker") + 1]))
elif __name__ == "__main__" and "--rng" in sys.argv:
    _rng_worker(Path(sys.argv[sys.argv.index("--rng") + 1]))
elif __name__ == "__main__" and "--crash" in sys.argv:
    _crash_worker()
