"""Checkpoints and exact resume: a run killed with SIGKILL (mid-epoch, or while writing its checkpoint)
continues with ``resume="auto"`` and ends with the weights of an uninterrupted run with the same seed."""
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
from torch.utils.data import Dataset, TensorDataset

from learnkit import (CheckpointCallback, CrossEntropyLossFlat, DataLoaders, EarlyStoppingCallback, ExportError,
                      Learner, accuracy)
from learnkit.core.callback import Callback
from learnkit.core.export import load_tree

# The worker trains a small model whose every step draws from all the random sources a checkpoint must
# restore: the loader's shuffling generator, torch (dropout, on-device augmentation), numpy and Python's
# random (noise added per item in the dataset).
WORKER = textwrap.dedent("""
    import os, random, sys, time, json
    from pathlib import Path
    import numpy as np, torch
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    from torch import nn
    from torch.utils.data import Dataset
    from safetensors.torch import save_file
    from learnkit import Learner, DataLoaders, CrossEntropyLossFlat, accuracy
    from learnkit.core.callback import Callback
    import learnkit.core.safefile as export_mod  # where save_tree writes

    out = Path(sys.argv[1])
    kill_at = os.environ.get("KILL_AT")            # "epoch,iter": signal and hang there (the parent kills us)
    hang_write = os.environ.get("HANG_IN_WRITE")   # epoch: hang half-way through writing that checkpoint

    class NoisyDs(Dataset):
        def __init__(self, x, y): self.x, self.y = x, y
        def __len__(self): return len(self.x)
        def __getitem__(self, i):
            return self.x[i] + 0.01 * float(np.random.randn()) + 0.01 * random.random(), self.y[i]

    class AugDls(DataLoaders):
        def on_device(self, batch, training):
            return (batch[0] + 0.05 * torch.randn_like(batch[0]), *batch[1:]) if training else batch

    class Hang(Callback):
        def before_batch(self):
            if kill_at and (self.learn.epoch, self.learn.iter) == tuple(map(int, kill_at.split(","))):
                (out / "ready").write_text("x"); time.sleep(600)

    if hang_write:
        real, calls = export_mod.save_file, []
        def slow_save(tensors, filename, metadata=None):
            calls.append(1)
            if len(calls) == int(hang_write) + 1:
                real(tensors, filename, metadata=metadata)
                data = Path(filename).read_bytes(); Path(filename).write_bytes(data[: len(data) // 2])
                (out / "ready").write_text("x"); time.sleep(600)
            return real(tensors, filename, metadata=metadata)
        export_mod.save_file = slow_save

    torch.manual_seed(0); np.random.seed(0); random.seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(240, 4, generator=g); y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).long() + (x[:, 3] > 1).long()
    dls = AugDls.from_dsets(NoisyDs(x[48:], y[48:]), NoisyDs(x[:48], y[:48]), bs=16, device="cpu")
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, path=out, progress=False,
                    cbs=[Hang()])
    learn.fit_one_cycle(4, 1e-2, resume="auto")
    save_file({k: v.contiguous() for k, v in learn.model.state_dict().items()}, str(out / "final.safetensors"))
    (out / "history.json").write_text(json.dumps(learn.recorder.values))
""")


def _worker(tmp: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    tmp.mkdir(parents=True, exist_ok=True)
    script = tmp / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen([sys.executable, str(script), str(tmp)], cwd=tmp, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen) -> None:
    out, err = p.communicate(timeout=300)
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
    (folder / "ready").unlink()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    _finish(_worker(folder))
    return folder


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "final.safetensors")), load_file(str(b / "final.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs after resume"


@pytest.mark.slow  # starts fresh Python processes
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path, uninterrupted):
    p = _worker(tmp_path, {"KILL_AT": "2,3"})  # killed in the 4th batch of the 3rd epoch
    _kill_when_ready(p, tmp_path)
    header, _ = load_tree(tmp_path / "models" / "checkpoint.safetensors", "checkpoint")
    assert header["epoch"] == 1 and not header["complete"] and not (tmp_path / "final.safetensors").exists()
    _finish(_worker(tmp_path))  # same script, resume="auto"
    _same_weights(tmp_path, uninterrupted)
    assert json.loads((tmp_path / "history.json").read_text()) == json.loads((uninterrupted / "history.json").read_text())


@pytest.mark.slow  # starts fresh Python processes
def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, uninterrupted):
    p = _worker(tmp_path, {"HANG_IN_WRITE": "2"})  # half of epoch 2's checkpoint is on disk when killed
    _kill_when_ready(p, tmp_path)
    models = tmp_path / "models"
    leftovers = [f for f in models.iterdir() if f.name.endswith(".tmp")]
    assert len(leftovers) == 1  # the half-written temp file, never the real name
    header, _ = load_tree(models / "checkpoint.safetensors", "checkpoint")
    assert header["epoch"] == 1
    _finish(_worker(tmp_path))
    _same_weights(tmp_path, uninterrupted)


# --- in-process checks (fast) ------------------------------------------------------------------------------
class Crash(Exception):
    pass


class CrashAt(Callback):
    def __init__(self, epoch: int, it: int):
        self.at = (epoch, it)

    def before_batch(self):
        if (self.learn.epoch, self.learn.iter) == self.at:
            raise Crash()


class Noisy(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.01 * float(np.random.randn()) + 0.01 * random.random(), self.y[i]


def _learner(path: Path, cbs=(), seed: int = 0, n: int = 120) -> Learner:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, generator=g)
    y = (x.sum(1) > 0).long()
    dls = DataLoaders.from_dsets(Noisy(x[24:], y[24:]), Noisy(x[:24], y[:24]), bs=16, device="cpu")
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, path=path, progress=False,
                   cbs=list(cbs))


def _states_equal(a: Learner, b: Learner) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_resume_in_process_matches_and_restores_callback_state(tmp_path):
    ref = _learner(tmp_path / "ref", [EarlyStoppingCallback(patience=10)])
    ref.fit_one_cycle(4, 1e-2, resume="auto")
    crashed = _learner(tmp_path / "run", [EarlyStoppingCallback(patience=10), CrashAt(2, 2)])
    with pytest.raises(Crash):
        crashed.fit_one_cycle(4, 1e-2, resume="auto")
    resumed = _learner(tmp_path / "run", [EarlyStoppingCallback(patience=10), CheckpointCallback()],
                       seed=123)  # another seed: everything must come from the checkpoint
    resumed.fit_one_cycle(4, 1e-2, resume="auto")
    assert resumed.checkpoint.resumed_from == tmp_path / "run" / "models" / "checkpoint.safetensors"
    assert _states_equal(ref, resumed)
    assert resumed.recorder.values == ref.recorder.values and resumed.recorder.lrs == ref.recorder.lrs
    assert resumed.early_stopping.best == ref.early_stopping.best
    assert resumed.early_stopping.wait == ref.early_stopping.wait


def test_auto_without_a_checkpoint_starts_fresh_and_a_finished_run_is_not_retrained(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(2, lr=1e-2, resume="auto")
    ckpt = tmp_path / "models" / "checkpoint.safetensors"
    header, _ = load_tree(ckpt, "checkpoint")
    assert header["epoch"] == 1 and header["complete"]
    # issue 19 item 2: a finished run is never resumed by "auto": it starts fresh and says so
    again = _learner(tmp_path, [CheckpointCallback()], seed=5)
    with pytest.warns(UserWarning, match="run that finished all its epochs: resume='auto' starts a new run"):
        again.fit(2, lr=1e-2, resume="auto")
    assert again.checkpoint.resumed_from is None
    assert len(again.recorder.losses) == len(learn.recorder.losses)  # every batch trained again
    assert not _states_equal(learn, again)  # seed 5: another run, not the old weights restored


def test_checkpoint_every_n_epochs_and_explicit_paths(tmp_path):
    cb = CheckpointCallback(fname=tmp_path / "ck" / "run1", every=2)
    learn = _learner(tmp_path, [cb])
    written = []
    learn.add_cb(type("Spy", (Callback,), {"order": 80, "after_epoch": lambda self: written.append(
        load_tree(cb.path, "checkpoint")[0]["epoch"] if cb.path.exists() else None)})())
    learn.fit(3, lr=1e-2)
    assert cb.path == tmp_path / "ck" / "run1.safetensors"
    assert written == [None, 1, 2]  # after epochs 2 and 3 (the last one always)
    other = _learner(tmp_path / "elsewhere")
    other.fit(3, lr=1e-2, resume=cb.path)
    assert _states_equal(learn, other)
    with pytest.raises(ValueError, match=r"every \(epochs between checkpoints\) must be a positive integer"):
        CheckpointCallback(every=0)


def test_resume_errors_are_clear(tmp_path):
    learn = _learner(tmp_path)
    with pytest.raises(Crash):  # an unfinished run: its checkpoint (epoch 0) is resumable
        learn.fit(2, lr=1e-2, resume="auto", cbs=[CrashAt(1, 1)])
    ckpt = tmp_path / "models" / "checkpoint.safetensors"
    with pytest.raises(ValueError, match="different run .*n_epoch: checkpoint 2, now 3"):
        _learner(tmp_path).fit(3, lr=1e-2, resume="auto")
    with pytest.raises(ValueError, match="different run .*n_iter: checkpoint 6, now 9"):
        _learner(tmp_path, n=160).fit(2, lr=1e-2, resume="auto")
    with pytest.raises(ValueError, match="different run .*schedules"):
        _learner(tmp_path).fit_one_cycle(2, 1e-2, resume="auto")
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nothing.safetensors.*resume='auto'"):
        _learner(tmp_path).fit(2, resume=tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match="either resume or start_epoch"):
        _learner(tmp_path).fit(2, resume="auto", start_epoch=1)
    with pytest.raises(TypeError, match="resume must be None, 'auto' or the path"):
        _learner(tmp_path).fit(2, resume=True)
    wide = _learner(tmp_path)
    wide.model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))
    wide.create_opt()
    with pytest.raises(ValueError, match="does not fit this model"):
        wide.fit(2, lr=1e-2, resume="auto")
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) - 10])
    with pytest.raises(ExportError, match="truncated"):
        _learner(tmp_path).fit(2, lr=1e-2, resume="auto")


def test_changed_lr_or_labels_refuse_to_resume_and_say_why(tmp_path):
    with pytest.raises(Crash):
        _learner(tmp_path).fit(2, lr=1e-2, resume="auto", cbs=[CrashAt(1, 1)])
    with pytest.raises(ValueError, match=r"different run .*lr: checkpoint \[0.01\], now \[0.001\]"):
        _learner(tmp_path).fit(2, lr=1e-3, resume="auto")
    relabelled = _learner(tmp_path)
    relabelled.dls.vocab = ["cat", "dog"]
    with pytest.raises(ValueError, match="different run .*vocab: checkpoint None, now '2 labels"):
        relabelled.fit(2, lr=1e-2, resume="auto")
    same = _learner(tmp_path, [CheckpointCallback()])
    same.fit(2, lr=1e-2, resume="auto")  # the unchanged run still resumes
    assert same.checkpoint.resumed_from is not None


def test_lr_changed_by_reduce_lr_on_plateau_still_resumes(tmp_path):
    from learnkit import ReduceLROnPlateau

    def cbs():  # min_delta=100: never an improvement, so the lr drops after every epoch
        return [ReduceLROnPlateau(min_delta=100.0, patience=0), CheckpointCallback()]
    with pytest.raises(Crash):
        _learner(tmp_path, cbs()).fit(3, lr=1e-2, resume="auto", cbs=[CrashAt(2, 1)])
    resumed = _learner(tmp_path, cbs())
    resumed.fit(3, lr=1e-2, resume="auto")  # the fingerprint keeps the lr the fit started with
    assert resumed.checkpoint.resumed_from is not None


def test_export_file_is_not_a_checkpoint(tmp_path):
    from learnkit.core.export import save_tree
    fake = save_tree(tmp_path / "x.safetensors", {"w": torch.ones(1)}, {"format": "learnkit-export"})
    with pytest.raises(ExportError, match="not a checkpoint"):
        _learner(tmp_path).fit(1, resume=fake)


def test_validation_free_runs_and_plain_tensor_loaders_resume(tmp_path):
    x = torch.randn(64, 2)
    y = (x[:, 0] > 0).long()

    def make():
        torch.manual_seed(0)
        dls = DataLoaders.from_dsets(TensorDataset(x, y), None, bs=8, device="cpu")
        return Learner(dls, nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), path=tmp_path, progress=False)

    ref = make()
    ref.fit(3, lr=0.1)
    (tmp_path / "models" / "checkpoint.safetensors").unlink(missing_ok=True)
    crashed = make()
    with pytest.raises(Crash):
        crashed.fit(3, lr=0.1, resume="auto", cbs=[CrashAt(1, 4)])
    resumed = make()
    resumed.fit(3, lr=0.1, resume="auto")
    assert _states_equal(ref, resumed)


def test_lr_find_is_never_checkpointed(tmp_path):
    learn = _learner(tmp_path, [CheckpointCallback()])
    learn.lr_find(num_it=12, show_plot=False)
    assert not (tmp_path / "models" / "checkpoint.safetensors").exists()
    learn.fit(1, lr=1e-2)
    assert (tmp_path / "models" / "checkpoint.safetensors").exists()


# --- issue 15: precision, fewer GPUs, the DDP sampler's epoch, lr_find's scaler ---------------------------
def test_resuming_in_another_precision_says_so(tmp_path):
    with pytest.raises(Crash):
        _learner(tmp_path).fit(2, lr=1e-2, resume="auto", cbs=[CrashAt(1, 1)])
    learn = _learner(tmp_path)
    learn.to_bf16()
    with pytest.raises(ValueError, match=r"precision: checkpoint 'fp32', now 'bf16'.*learn.to_fp32\(\)"):
        learn.fit(2, lr=1e-2, resume="auto")


def test_cuda_states_of_more_gpus_than_visible_restore_the_visible_ones(monkeypatch):
    """A run checkpointed on 4 GPUs resumes on 1: the first device's state is restored, no IndexError."""
    from learnkit.core.callbacks import rng_states as ck
    restored = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.append((int(s[0]), device)))
    ck._set_cuda_rng([torch.tensor([i], dtype=torch.uint8) for i in range(4)])
    assert restored == [(0, 0)]


@pytest.fixture
def one_process_group():
    import socket

    import torch.distributed as dist
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_shuffle_continues_from_the_resumed_epoch(tmp_path, one_process_group):
    """After a resume at epoch k the DistributedSampler draws epoch k's order, not epoch 0's again."""
    from learnkit.core.distributed import DistributedTrainer

    class SamplerEpochs(Callback):
        order = -10  # after the DistributedTrainer swapped in the shard

        def before_fit(self):
            self.epochs = []

        def before_train(self):
            self.epochs.append(self.learn.dl.sampler.epoch)

    crashed = _learner(tmp_path, [CrashAt(2, 1)])
    crashed.add_cb(DistributedTrainer())
    with pytest.raises(Crash):
        crashed.fit(4, lr=1e-2, resume="auto")
    seen = SamplerEpochs()
    resumed = _learner(tmp_path, [seen])
    resumed.add_cb(DistributedTrainer())
    resumed.fit(4, lr=1e-2, resume="auto")
    assert seen.epochs == [2, 3]
    resumed.fit(1, lr=1e-2)  # a later fit goes on counting
    assert seen.epochs == [4]


def test_lr_find_restores_the_loss_scale_and_survives_ctrl_c(tmp_path):
    learn = _learner(tmp_path)
    learn.scaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=1)  # grows at every step
    learn.create_opt()
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.lr_find(num_it=8, show_plot=False)
    assert learn.scaler.get_scale() == 4.0 and learn.scaler.state_dict()["_growth_tracker"] == 0

    class CtrlC(Callback):
        def before_batch(self):
            if self.learn.iter == 3:
                raise KeyboardInterrupt

    lrs = [pg["lr"] for pg in learn.opt.param_groups]
    with learn.added_cbs(CtrlC()), pytest.raises(KeyboardInterrupt):
        learn.lr_find(num_it=8, show_plot=False)
    assert all(torch.equal(v, before[k]) for k, v in learn.model.state_dict().items())
    assert [pg["lr"] for pg in learn.opt.param_groups] == lrs and learn.scaler.get_scale() == 4.0
