"""Bad inputs to the core and the message each one gets (catalogued in docs/bad-inputs.md)."""
from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from learnkit import (CheckpointCallback, CrossEntropyLossFlat, DataLoaders, Learner, MSELossFlat, accuracy,
                      error_rate, load_learner, mae, mse, register_dls, register_model, rmse)
from learnkit.core import checkpoint as ckpt_mod
from learnkit.core import safefile  # where exports and checkpoints are written
from learnkit.core.callback import Callback
from learnkit.core.callbacks import LRFinder, OneCycleScheduler, combine_scheds, sched_lin
from learnkit.core.data import make_loader


@register_model("test_bad_inputs.linear")
def linear(n_in: int = 2, n_out: int = 2) -> nn.Module:
    return nn.Linear(n_in, n_out)


@register_dls
class BadInputsDls(DataLoaders):
    def export_config(self):
        return {"vocab": self.vocab}

    @classmethod
    def from_config(cls, config, device=None):
        return cls(None, None, device=device, vocab=config["vocab"])

    def test_dl(self, items, with_labels=False, bs=None):
        return [(torch.tensor(items, dtype=torch.float32),)]


def cls_dls(n=40, bs=8, drop_last=False, cls=DataLoaders):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] > 0).long()
    k = n // 5
    dls = cls.from_dsets(TensorDataset(x[k:], y[k:]), TensorDataset(x[:k], y[:k]) if k else None, bs=bs,
                         drop_last=drop_last, device="cpu")
    dls.vocab = ["a", "b"]
    return dls


def reg_dls(n=40):
    x = torch.randn(n, 2)
    y = x.sum(1, keepdim=True)
    return DataLoaders.from_dsets(TensorDataset(x[8:], y[8:]), TensorDataset(x[:8], y[:8]), bs=8, device="cpu")


def learner(path=None, **kw) -> Learner:
    return Learner(cls_dls(), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), progress=False, path=path, **kw)


def exportable(path) -> Learner:
    learn = Learner(cls_dls(cls=BadInputsDls), linear(), loss_func=CrossEntropyLossFlat(), progress=False, path=path)
    learn.model_spec = {"builder": "test_bad_inputs.linear", "kwargs": {}}
    return learn


# --- wrong argument types and values ---------------------------------------------------------------------------
def test_wrong_argument_types_are_named():
    dls = cls_dls()
    with pytest.raises(TypeError, match="dls must be a learnkit DataLoaders, got list"):
        Learner([1, 2], nn.Linear(2, 2))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        Learner(dls, lambda x: x, loss_func=CrossEntropyLossFlat())
    with pytest.raises(TypeError, match="opt_func must be callable, got 'adam'"):
        Learner(dls, nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), opt_func="adam")
    with pytest.raises(TypeError, match="splitter must be callable"):
        Learner(dls, nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), splitter=[1])
    with pytest.raises(TypeError, match="callbacks must be Callback instances, got 'progress'"):
        Learner(dls, nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), cbs=["progress"])
    with pytest.raises(TypeError, match="metrics must be Metric instances or functions.*'accuracy'"):
        Learner(dls, nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), metrics="accuracy")
    with pytest.raises(ValueError, match="no loss_func given and the DataLoaders has no default"):
        Learner(dls, nn.Linear(2, 2))


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), "0.1", True, slice(0, 1e-3), slice(-1, 1e-3)])
def test_learning_rate_must_be_positive(lr):
    with pytest.raises(ValueError, match="learning rate must be a positive number"):
        Learner(cls_dls(), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), lr=lr)


def test_learning_rate_checks_in_every_entry_point():
    learn = learner()
    for call in (lambda: learn.fit(1, lr=0), lambda: learn.fit_one_cycle(1, lr_max=-1),
                 lambda: learn.fine_tune(1, base_lr=0)):
        with pytest.raises(ValueError, match="learning rate must be a positive number"):
            call()
    with pytest.raises(ValueError, match="got 2 learning rates for 1 parameter groups"):
        learn.fit(1, lr=[1e-3, 1e-2], reset_opt=True)
    with pytest.raises(ValueError, match="need 0 < start_lr < end_lr"):
        learn.lr_find(start_lr=1.0, end_lr=0.1, show_plot=False)


@pytest.mark.parametrize("wd", [-0.1, "0.01", float("nan")])
def test_weight_decay_must_be_non_negative(wd):
    with pytest.raises(ValueError, match="wd \\(weight decay\\) must be a number >= 0"):
        Learner(cls_dls(), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), wd=wd)
    with pytest.raises(ValueError, match="wd \\(weight decay\\) must be a number >= 0"):
        learner().fit(1, wd=wd)


@pytest.mark.parametrize("n", [1.5, -1, "3", True])
def test_epochs_must_be_a_non_negative_integer(n):
    with pytest.raises(ValueError, match="n_epoch must be a non-negative integer"):
        learner().fit(n)


@pytest.mark.parametrize("bs", [0, -4, 2.5, True, "16"])
def test_batch_size_must_be_a_positive_integer(bs):
    with pytest.raises(ValueError, match="bs \\(batch size\\) must be a positive integer"):
        make_loader(list(range(10)), bs=bs)


def test_batch_size_larger_than_the_dataset_gives_one_batch():
    """Documented behaviour: bs > len(dataset) is allowed and trains on one (smaller) batch per epoch."""
    learn = Learner(cls_dls(n=20, bs=64), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), progress=False)
    assert len(learn.dls.train) == 1
    learn.fit(1, lr=1e-2)
    assert len(learn.recorder.losses) == 1


def test_empty_training_loader_is_refused():
    learn = Learner(cls_dls(n=20, bs=64, drop_last=True), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(),
                    progress=False)
    with pytest.raises(ValueError, match="training loader has no batches.*drop_last=True"):
        learn.fit(1)
    empty = TensorDataset(torch.empty(0, 2), torch.empty(0).long())
    with pytest.raises(ValueError, match="cannot shuffle an empty dataset"):
        DataLoaders.from_dsets(empty, bs=4, device="cpu")
    unshuffled = DataLoaders.from_dsets(empty, bs=4, shuffle=False, device="cpu")
    with pytest.raises(ValueError, match="training loader has no batches"):
        Learner(unshuffled, nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), progress=False).fit(1)


def test_schedule_arguments_are_checked():
    with pytest.raises(ValueError, match="pct_start must be in \\[0, 1\\]"):
        learner().fit_one_cycle(1, 1e-3, pct_start=1.5)
    with pytest.raises(ValueError, match="fractions must sum to 1"):
        combine_scheds([0.5, 0.6], [sched_lin(0, 1), sched_lin(1, 0)])
    with pytest.raises(ValueError, match="need 0 < start_lr < end_lr"):
        LRFinder(start_lr=0)
    with pytest.raises(ValueError, match="pct_start"):
        OneCycleScheduler(1e-3, pct_start=-0.1)


def test_splitter_without_groups_is_clear():
    learn = Learner(cls_dls(), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), splitter=lambda m: [],
                    progress=False)
    with pytest.raises(ValueError, match="splitter returned no parameter groups"):
        learn.fit(1)


def test_callback_hiding_a_learner_attribute_is_refused():
    class Model(Callback):  # its name would be "model"
        pass

    with pytest.raises(ValueError, match="would hide the Learner attribute"):
        learner().add_cb(Model())


# --- metrics that do not match the task ------------------------------------------------------------------------
def test_classification_metric_on_a_regression_task():
    learn = Learner(reg_dls(), nn.Linear(2, 1), loss_func=MSELossFlat(), metrics=accuracy, progress=False)
    with pytest.raises(ValueError, match="accuracy compares class indices, but the targets are floats.*mse"):
        learn.fit(1)
    with pytest.raises(ValueError, match="error_rate needs one score per class.*\\[4, 1\\]"):
        error_rate(torch.randn(4, 1), torch.zeros(4).long())


def test_regression_metric_on_a_classification_task():
    learn = Learner(cls_dls(), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), metrics=[mse], progress=False)
    with pytest.raises(ValueError, match="mse needs one prediction per target.*\\[8, 2\\].*accuracy"):
        learn.fit(1)
    for m in (mae, rmse):
        with pytest.raises(ValueError, match="needs one prediction per target"):
            m(torch.randn(4, 3), torch.zeros(4))


def test_fp16_on_cpu_warns_and_keeps_fp32():
    """Documented behaviour: fp16 needs CUDA; elsewhere learnkit warns and trains in fp32."""
    learn = learner()
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.warns(UserWarning, match="fp16 mixed precision needs CUDA"):
        learn.to_fp16()
    assert learn.precision == "fp32"


# --- paths ---------------------------------------------------------------------------------------------------
def test_paths_that_do_not_exist(tmp_path):
    learn = learner(path=tmp_path / "new" / "run")
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing.pth"):
        learn.load("missing")
    with pytest.raises(FileNotFoundError, match="no learnkit export at .*nothing.safetensors"):
        load_learner(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*gone.safetensors"):
        learn.fit(1, resume=tmp_path / "gone.safetensors")
    # documented behaviour: an output folder that does not exist yet is created on the first save
    assert learn.save("m") == tmp_path / "new" / "run" / "models" / "m.pth"


def test_output_path_that_is_a_file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(OSError, match="cannot create the folder .*a_file/models to save m.pth"):
        learner(path=f).save("m")


def test_inference_only_learner_cannot_train(tmp_path):
    learn = exportable(tmp_path)
    new = load_learner(learn.export(), device="cpu")
    with pytest.raises(ValueError, match="no training data .*load_learner"):
        new.fit(1)
    with pytest.raises(IndexError, match="no validation set"):
        new.validate()


def test_no_validation_set_is_clear():
    dls = DataLoaders.from_dsets(TensorDataset(torch.randn(8, 2), torch.zeros(8).long()), None, bs=4, device="cpu")
    learn = Learner(dls, nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), progress=False)
    with pytest.raises(IndexError, match="no validation set .*valid_pct=0"):
        learn.get_preds()


# --- read-only folders and full disks --------------------------------------------------------------------------
def _mount_tmpfs(folder: Path, opts: str) -> bool:
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True)
    return r.returncode == 0


@pytest.fixture
def read_only_dir(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if not _mount_tmpfs(d, "ro,size=1m"):
        pytest.skip("running as root and no read-only tmpfs can be mounted to test with")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


def test_read_only_output_folder(read_only_dir):
    learn = exportable(read_only_dir)
    with pytest.raises(OSError, match="cannot create the folder .*ro/models to save m.pth"):
        learn.save("m")
    learn.model_dir = "."
    with pytest.raises(PermissionError, match="the folder .*ro is not writable; pass another path"):
        learn.save("m")
    with pytest.raises(PermissionError, match="is not writable"):
        learn.export()
    with pytest.raises(PermissionError, match="is not writable"):
        learn.fit(1, lr=1e-2, cbs=[CheckpointCallback()])
    assert list(read_only_dir.iterdir()) == []


@pytest.mark.parametrize("what", ["save", "export", "checkpoint"])
def test_disk_full_keeps_the_previous_file(tmp_path, monkeypatch, what):
    """Disk full simulated by making the write fail with ENOSPC half-way (see the tmpfs test for a real one)."""
    learn = exportable(tmp_path)
    write = {"save": lambda: learn.save("m"), "export": lambda: learn.export(),
             "checkpoint": lambda: learn.fit(1, lr=1e-2, cbs=[CheckpointCallback()])}[what]
    write()
    path = {"save": tmp_path / "models" / "m.pth", "export": tmp_path / "export.safetensors",
            "checkpoint": tmp_path / "models" / "checkpoint.safetensors"}[what]
    before = path.read_bytes()
    real = ckpt_mod.atomic_write

    def failing_write(p, write_fn):
        def half_then_enospc(tmp):
            write_fn(tmp)
            tmp.write_bytes(tmp.read_bytes()[:100])
            raise OSError(28, "No space left on device")
        return real(p, half_then_enospc)

    for mod in (ckpt_mod, safefile):
        monkeypatch.setattr(mod, "atomic_write", failing_write)
    with torch.no_grad():
        learn.model.weight.add_(1.0)
    with pytest.raises(OSError, match="no space left on the device while saving .* the previous file .* is intact"):
        write()
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_on_a_real_tiny_filesystem(tmp_path):
    d = tmp_path / "full"
    d.mkdir()
    if not _mount_tmpfs(d, "size=64k"):
        pytest.skip("needs root to mount a 64 KiB tmpfs")
    try:
        small = Learner(cls_dls(), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), progress=False, path=d,
                        model_dir=".")
        small.save("m")
        before = (d / "m.pth").read_bytes()
        big = Learner(cls_dls(), nn.Linear(2, 200 * 200), loss_func=CrossEntropyLossFlat(), progress=False, path=d,
                      model_dir=".")
        with pytest.raises(OSError, match="no space left on the device while saving .*m.pth"):
            big.save("m")
        assert (d / "m.pth").read_bytes() == before
        assert [p.name for p in d.iterdir()] == ["m.pth"]
        small.load("m")
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)  # lazy: an open handle would keep it busy


def test_nan_loss_stops_training_cleanly():
    """Documented behaviour: TerminateOnNaNCallback stops at the first non-finite loss."""
    from learnkit import TerminateOnNaNCallback
    x = torch.randn(32, 2)
    y = torch.full((32, 1), float("nan"))
    dls = DataLoaders.from_dsets(TensorDataset(x, y), None, bs=8, device="cpu")
    learn = Learner(dls, nn.Linear(2, 1), loss_func=MSELossFlat(), progress=False, cbs=[TerminateOnNaNCallback()])
    learn.fit(3)
    cb = next(c for c in learn.cbs if isinstance(c, TerminateOnNaNCallback))
    assert cb.terminated_at == (0, 0) and learn.epoch == 0 and math.isnan(float(learn.loss))


# --- the catalogue ---------------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]


def test_catalogue_links_to_real_tests():
    """docs/bad-inputs.md lists at least 30 bad inputs and every test it names exists."""
    import re
    doc = (REPO / "docs" / "bad-inputs.md").read_text()
    rows = [line for line in doc.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) >= 30
    numbers = [int(r.split("|")[1]) for r in rows]
    assert numbers == list(range(1, len(rows) + 1)), "rows must be numbered 1, 2, 3, ..."
    for row in rows:
        refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row)
        assert refs, f"row without a test: {row[:80]}"
        for file, name in refs:
            src = REPO / file
            assert src.is_file(), f"{file} (named in docs/bad-inputs.md) does not exist"
            assert re.search(rf"^def {name}\(", src.read_text(), re.M), f"{file}::{name} does not exist"
