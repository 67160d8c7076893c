"""Mid-epoch checkpoints (issue 27): ``CheckpointCallback(every_batches=N)`` and ``fit(..., resume="auto")``
continue a run killed in the middle of an epoch, training only the batches left, and end with the weights of
an uninterrupted run bit for bit (CPU), with and without DataLoader workers, and with its recorded validation
values although the validation set draws random numbers too."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from learnkit import CheckpointCallback, CrossEntropyLossFlat, DataLoaders, GradientAccumulation, Learner, accuracy
from learnkit.core.callback import Callback
from learnkit.core.export import load_tree
from learnkit.core.loader_state import SkipBatches, epoch_loader, loader_snapshot, restore_snapshot

# Every step draws from all the random sources: the loader's shuffling generator, numpy and Python's random
# in the dataset (in the worker processes when num_workers > 0), torch in dropout and on-device noise.
WORKER = textwrap.dedent("""
    import os, random, sys, time, json
    from pathlib import Path
    import numpy as np, torch
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    from torch import nn
    from torch.utils.data import Dataset
    from safetensors.torch import save_file
    from learnkit import Learner, DataLoaders, CrossEntropyLossFlat, CheckpointCallback, accuracy
    from learnkit.core.callback import Callback

    out = Path(sys.argv[1]); workers = int(sys.argv[2])
    kill_at = os.environ.get("KILL_AT")  # "epoch,iter": say so and hang there (the parent SIGKILLs us)

    class NoisyDs(Dataset):
        def __init__(self, x, y): self.x, self.y = x, y
        def __len__(self): return len(self.x)
        def __getitem__(self, i):
            return self.x[i] + 0.05 * float(np.random.randn()) + 0.05 * random.random() + 0.05 * torch.rand(()), self.y[i]

    class AugDls(DataLoaders):
        def on_device(self, batch, training):
            return (batch[0] + 0.05 * torch.randn_like(batch[0]), *batch[1:]) if training else batch

    class Trained(Callback):  # which (epoch, batch) pairs this process trained
        order = 90
        def before_fit(self): self.seen = []
        def after_batch(self):
            if self.learn.training: self.seen.append([self.learn.epoch, self.learn.iter])
        def before_batch(self):
            if kill_at and [self.learn.epoch, self.learn.iter] == list(map(int, kill_at.split(","))) and self.learn.training:
                (out / "trained.json").write_text(json.dumps(self.seen)); (out / "ready").write_text("x"); time.sleep(600)

    torch.manual_seed(0); np.random.seed(0); random.seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(240, 4, generator=g); y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).long() + (x[:, 3] > 1).long()
    # validation draws random numbers too (in its workers when num_workers > 0): the resumed run must draw the same
    dls = AugDls.from_dsets(NoisyDs(x[48:], y[48:]), NoisyDs(x[:48], y[:48]), bs=16, device="cpu", num_workers=workers)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    trained = Trained()
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, path=out, progress=False,
                    cbs=[trained, CheckpointCallback(every_batches=3)])
    learn.fit_one_cycle(2, 1e-2, resume="auto")
    save_file({k: v.contiguous() for k, v in learn.model.state_dict().items()}, str(out / "final.safetensors"))
    (out / "history.json").write_text(json.dumps(learn.recorder.values))
    (out / "trained_after.json").write_text(json.dumps(trained.seen))
""")
N_ITER = 12  # 192 training items in batches of 16


def _run(folder: Path, workers: int, kill_at: str | None = None) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LEARNKIT_PROGRESS": "0"}
    env.pop("KILL_AT", None)
    if kill_at:
        env["KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, str(folder / "worker.py"), str(folder), str(workers)], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen) -> None:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]


def _kill_when_ready(p: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 300
    while not (folder / "ready").exists():
        if p.poll() is not None:
            raise AssertionError(f"worker exited early: {p.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "worker never reached the kill point"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL


@pytest.mark.slow  # fresh Python processes
@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_at_a_random_mid_epoch_batch_resumes_bit_identical(tmp_path, workers):
    ref = tmp_path / "ref"
    _finish(_run(ref, workers))
    # in the last epoch: the uninterrupted run's validation workers there are not the first its loader started
    epoch, it = 1, random.Random().choice(range(4, N_ITER - 1))
    run = tmp_path / "run"
    _kill_when_ready(_run(run, workers, kill_at=f"{epoch},{it}"), run)
    header, _ = load_tree(run / "models" / "checkpoint.safetensors", "checkpoint")
    done = (it // 3) * 3  # the last multiple of every_batches=3 trained before the kill
    assert (header["epoch"], header["batches_done"]) == (epoch, done) and not header["complete"]
    _finish(_run(run, workers))  # the same script, resume="auto"
    trained_after = json.loads((run / "trained_after.json").read_text())
    # only the batches left: from batch `done` of that epoch to the end of the fit
    assert trained_after == [[e, i] for e in range(epoch, 2) for i in range(N_ITER) if (e, i) >= (epoch, done)]
    wa, wb = load_file(str(ref / "final.safetensors")), load_file(str(run / "final.safetensors"))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs after the mid-epoch resume (kill at {epoch},{it})"
    assert json.loads((run / "history.json").read_text()) == json.loads((ref / "history.json").read_text())


# --- in-process checks (fast) ------------------------------------------------------------------------------
class Crash(Exception):
    pass


class CrashAt(Callback):
    def __init__(self, epoch: int, it: int):
        self.at = (epoch, it)

    def before_batch(self):
        if self.learn.training and (self.learn.epoch, self.learn.iter) == self.at:
            raise Crash()


class Noisy(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.01 * float(np.random.randn()) + 0.01 * random.random(), self.y[i]


def _learner(path: Path, cbs=(), seed: int = 0, workers: int = 0) -> Learner:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(120, 2, generator=g)
    y = (x.sum(1) > 0).long()
    dls = DataLoaders.from_dsets(Noisy(x[24:], y[24:]), Noisy(x[:24], y[:24]), bs=8, device="cpu", num_workers=workers)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, path=path, progress=False,
                   cbs=list(cbs))


def _same(a: Learner, b: Learner) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_in_process_mid_epoch_resume_matches_with_gradient_accumulation(tmp_path):
    def cbs():  # n_acc=16 with bs=8: a step every 2nd batch; a checkpoint only after a batch that stepped
        return [GradientAccumulation(n_acc=16), CheckpointCallback(every_batches=3)]
    ref = _learner(tmp_path / "ref", cbs())
    ref.fit_one_cycle(2, 1e-2, resume="auto")
    with pytest.raises(Crash):
        _learner(tmp_path / "run", cbs() + [CrashAt(1, 10)]).fit_one_cycle(2, 1e-2, resume="auto")
    header, _ = load_tree(tmp_path / "run" / "models" / "checkpoint.safetensors", "checkpoint")
    # steps after odd batches; due after batches 3, 6, 9: written after 4 (the step after 3), 6, and 10 (after 9)
    assert header["batches_done"] == 10
    resumed = _learner(tmp_path / "run", cbs(), seed=99)
    resumed.fit_one_cycle(2, 1e-2, resume="auto")
    assert resumed.checkpoint.resumed_at == (1, 10)
    assert _same(ref, resumed) and resumed.recorder.values == ref.recorder.values
    assert resumed.recorder.lrs == ref.recorder.lrs



def _crash_resume_and_compare(run, tmp_path, epoch: int) -> None:
    """An uninterrupted ``run``, then one killed at batch 7 of ``epoch`` and resumed (with another seed, so only
    the checkpoint can make it match): it resumes after batch 6 and ends with the same weights and values."""
    ref = run(tmp_path / "ref")
    with pytest.raises(Crash):
        run(tmp_path / "run", [CrashAt(epoch, 7)])
    resumed = run(tmp_path / "run", seed=5)
    assert resumed.checkpoint.resumed_at == (epoch, 6)
    assert _same(ref, resumed) and resumed.recorder.values == ref.recorder.values

def test_random_validation_draws_in_workers_are_replayed(tmp_path):
    """The validation set draws random numbers in 2 persistent workers: a run resumed in its last epoch (fresh
    workers) must validate with the draws of the uninterrupted run, whose workers had validated before."""
    def run(path, extra=(), seed=0):
        learn = _learner(path, [CheckpointCallback(every_batches=3), *extra], seed=seed, workers=2)
        learn.fit_one_cycle(3, 1e-2, resume="auto")
        return learn
    _crash_resume_and_compare(run, tmp_path, epoch=2)


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_loaders_without_a_generator_resume_mid_epoch(tmp_path, workers):
    """``DataLoader(shuffle=True)`` without a generator draws its order (and its workers' seeds) from the process'
    torch stream when the epoch starts: the checkpoint keeps that stream, so the resumed run draws the same."""
    def run(path, extra=(), seed=0):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        x = torch.randn(120, 2, generator=torch.Generator().manual_seed(1))
        y = (x.sum(1) > 0).long()
        dls = DataLoaders(DataLoader(Noisy(x[24:], y[24:]), batch_size=8, shuffle=True, num_workers=workers),
                          DataLoader(Noisy(x[:24], y[:24]), batch_size=8, num_workers=workers), device="cpu")
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), path=path, progress=False,
                        cbs=[CheckpointCallback(every_batches=3), *extra])
        learn.fit(2, lr=1e-2, resume="auto")
        return learn
    _crash_resume_and_compare(run, tmp_path, epoch=1)


def test_every_minutes_writes_mid_epoch_and_bad_values_are_refused(tmp_path):
    learn = _learner(tmp_path, [CheckpointCallback(every_minutes=1e-9)])
    with pytest.raises(Crash):
        learn.fit(1, lr=1e-2, cbs=[CrashAt(0, 5)], resume="auto")
    header, _ = load_tree(tmp_path / "models" / "checkpoint.safetensors", "checkpoint")
    assert (header["epoch"], header["batches_done"]) == (0, 5)  # written after every batch
    with pytest.raises(ValueError, match="every_minutes must be a positive number"):
        CheckpointCallback(every_minutes=0)
    with pytest.raises(ValueError, match="every_batches"):
        CheckpointCallback(every_batches=0)


def test_skip_batches_and_epoch_loader_keep_the_order():
    g = torch.Generator().manual_seed(0)
    dl = DataLoader(list(range(20)), batch_size=3, shuffle=True, generator=g, num_workers=1, persistent_workers=True)
    twin = epoch_loader(dl)
    assert not twin.persistent_workers and twin.generator is g
    snap = loader_snapshot(twin)
    full = [b.tolist() for b in twin]
    restore_snapshot(twin, snap)
    started = []
    rest = [b.tolist() for b in SkipBatches(twin, 4, on_start=lambda: started.append(1))]
    assert rest == full[4:] and started == [1]
    restore_snapshot(twin, snap)
    assert [b.tolist() for b in SkipBatches(twin, 4, replay=False)] == full[4:]  # unread: the same batches
