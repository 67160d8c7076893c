"""Issue 19: interrupted runs. SIGINT (Ctrl-C) at a random batch of `fit`, `fine_tune` and `lr_find` leaves a
learner with consistent weights that trains on; SIGKILL during `save`, `export` and checkpoint writes leaves the
previous file loadable, and the next successful write leaves no temp file."""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from learnkit import CrossEntropyLossFlat, DataLoaders, Learner
from learnkit.core.callback import Callback
from learnkit.core.export import load_tree

sys.path[:0] = [str(Path(__file__).parent)]
from coretools import BodyHead, body_head_splitter, make_dls, two_class_data  # noqa: E402

EVENTS = ["before_batch", "after_pred", "after_loss", "after_backward", "after_step"]


@pytest.fixture(autouse=True)
def _ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt, as in a terminal: a process started in the background by a
    non-interactive shell (CI) inherits SIGINT ignored, and Python then leaves it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class Snapshots(Callback):
    """The weights after every completed optimizer step."""
    order = 90

    def __init__(self):
        self.last: dict[str, torch.Tensor] | None = None

    def after_step(self):
        self.last = {k: v.detach().clone() for k, v in self.learn.model.state_dict().items()}


class CtrlCAt(Callback):
    """Sends SIGINT to this process at ``event`` of the ``n``-th training batch of this callback's life."""
    order = 95

    def __init__(self, event: str, n: int):
        self.event, self.n, self.seen = event, n, 0
        setattr(self, event, self._maybe)

    def _maybe(self):
        if not self.learn.training:
            return
        self.seen += 1
        if self.seen == self.n:
            os.kill(os.getpid(), signal.SIGINT)


def _learner(seed: int = 0) -> Learner:
    torch.manual_seed(seed)
    x, y = two_class_data(96)
    return Learner(make_dls(x, y, bs=8), BodyHead(), loss_func=CrossEntropyLossFlat(), lr=1e-2,
                   splitter=body_head_splitter, progress=False)


def _weights(learn: Learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _trains_on(learn: Learner) -> None:
    before = _weights(learn)
    learn.fit(1, lr=1e-2)
    assert all(torch.isfinite(v).all() for v in learn.model.state_dict().values())
    assert not _equal(before, _weights(learn))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("how", ["fit", "fine_tune"])
def test_ctrl_c_at_a_random_batch_leaves_the_last_completed_step(how, seed):
    torch.set_num_threads(1)
    rng = random.Random(seed)
    event, n = rng.choice(EVENTS), rng.randint(1, 20)  # 10 training batches per epoch
    learn = _learner(seed)
    start = _weights(learn)
    snaps = Snapshots()
    with pytest.raises(KeyboardInterrupt):
        if how == "fit":
            learn.fit(3, cbs=[snaps, CtrlCAt(event, n)])
        else:
            learn.fine_tune(2, base_lr=1e-2, freeze_epochs=1, cbs=[snaps, CtrlCAt(event, n)])
    want = snaps.last if snaps.last is not None else start
    assert _equal(_weights(learn), want), f"SIGINT at {event} of batch {n}: weights are not the last step's"
    _trains_on(learn)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctrl_c_at_a_random_batch_of_lr_find_restores_the_weights_and_lr(seed):
    torch.set_num_threads(1)
    rng = random.Random(seed)
    event, n = rng.choice(EVENTS), rng.randint(1, 15)
    learn = _learner(seed)
    learn.create_opt()
    start, lrs = _weights(learn), [pg["lr"] for pg in learn.opt.param_groups]
    with learn.added_cbs(CtrlCAt(event, n)), pytest.raises(KeyboardInterrupt):
        learn.lr_find(num_it=20, show_plot=False)
    assert _equal(_weights(learn), start), f"SIGINT at {event} of batch {n} of lr_find changed the weights"
    assert [pg["lr"] for pg in learn.opt.param_groups] == lrs
    _trains_on(learn)


# --- SIGKILL during writes ---------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    sys.path[:0] = [{tests!r}]
    import torch
    torch.set_num_threads(1)
    from test_faults import build
    out, what = Path(sys.argv[1]), sys.argv[2]
    learn = build(out, what)
    real_fsync = os.fsync
    def hang(fd):  # the temp file is written: die before it replaces the target
        (out / "ready").write_text("x"); time.sleep(60)
    os.fsync = hang
    build(out, what, learn)   # the second write is killed
""")


def build(out: Path, what: str, learn: Learner | None = None) -> Learner:
    """Make (or reuse) a learner under ``out`` and write its ``what`` file once."""
    if learn is None:
        if what == "export":
            from test_export import toy_learner
            learn = toy_learner(out, epochs=0)
        else:
            learn = _learner()
            learn.path = out
    if what == "save":
        learn.save("model")
    elif what == "export":
        learn.export("export.safetensors")
    else:  # a checkpoint: one epoch of a run with checkpoints
        from learnkit import CheckpointCallback
        learn.fit(1, lr=1e-2, cbs=[CheckpointCallback()])
    return learn


TARGETS = {"save": "models/model.pth", "export": "export.safetensors",
           "checkpoint": "models/checkpoint.safetensors"}


def _check_loadable(path: Path, what: str) -> None:
    if what == "save":
        state = torch.load(path, weights_only=True)
        assert "model" in state
    else:
        header, _ = load_tree(path, what)
        assert header.get("format") == ("learnkit-checkpoint" if what == "checkpoint" else header.get("format"))


@pytest.mark.slow  # a fresh Python process
@pytest.mark.parametrize("what", ["save", "export", "checkpoint"])
def test_sigkill_during_a_write_leaves_the_previous_file_and_no_temp_after_the_next(tmp_path, what):
    tests = Path(__file__).parent
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(tests)))
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path), what], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        if p.poll() is not None:
            raise AssertionError(f"child exited early: {p.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "child never reached the write"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    target = tmp_path / TARGETS[what]
    temps = [f for f in target.parent.iterdir() if f.name.endswith(".tmp")]
    assert len(temps) == 1, temps  # the killed write's temp file; the target was never touched
    _check_loadable(target, what)
    build(tmp_path, what)  # the next successful write (this process)
    _check_loadable(target, what)
    assert [f for f in target.parent.iterdir() if f.name.endswith(".tmp")] == []


# --- issue 28: no silent failures, round 2 ---------------------------------------------------------------------
def _exportable(path) -> Learner:
    """A real (tabular) learner that exports and loads in a few milliseconds."""
    import pandas as pd
    from learnkit.tabular import TabularDataLoaders, tabular_learner
    g = torch.Generator().manual_seed(0)
    df = pd.DataFrame({"x": torch.randn(64, generator=g).tolist(), "y": ["ab"[i % 2] for i in range(64)]})
    dls = TabularDataLoaders.from_df(df, cont_names=["x"], y_names="y", bs=16, device="cpu", path=path)
    return tabular_learner(dls, layers=[8], progress=False, path=path)


def _lin_learner(path=None, **kw) -> Learner:
    return Learner(make_dls(*two_class_data(80), bs=16), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(),
                   progress=False, path=path, **kw)


@pytest.mark.parametrize("call, match", [
    (lambda l: l.fit(1, lr=float("inf")), "learning rate must be a positive number .*finite, got inf"),
    (lambda l: l.fit(1, wd=float("inf")), r"wd \(weight decay\) must be a number >= 0 \(and finite\)"),
    (lambda l: l.fit_one_cycle(1, div=-5), "div must be a number > 0, got -5"),
    (lambda l: l.fit_one_cycle(1, div=0), "div must be a number > 0, got 0"),
    (lambda l: l.fit_one_cycle(1, div_final=0), "div_final must be a number > 0"),
    (lambda l: l.fit_one_cycle(1, moms=(2, -1, 5)), r"moms must be None or three momentums .* \[0, 1\)"),
    (lambda l: l.fit_one_cycle(1, pct_start="0.3"), r"pct_start must be in \[0, 1\]"),
    (lambda l: l.fine_tune(1, div=0), "div must be a number > 0"),
    (lambda l: l.fine_tune(1, lr_mult=0), "lr_mult must be a number > 0"),
    (lambda l: l.fine_tune(1, base_lr=float("nan")), "learning rate must be a positive number"),
    (lambda l: l.fit_flat_cos(1, div_final=-1), "div_final must be a number > 0"),
    (lambda l: l.lr_find(end_lr=float("inf"), show_plot=False), "end_lr must be a number"),
])
def test_learning_rates_and_schedule_parameters_are_checked_before_any_step(call, match):
    learn = _lin_learner()
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        call(learn)
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items()), "a step was taken"


def test_a_callback_calling_fit_inside_a_fit_is_refused_and_the_learner_trains_on():
    class Nested(Callback):
        def after_epoch(self):
            self.learn.fit(1)

    learn = _lin_learner()
    with pytest.raises(RuntimeError, match=r"learn.fit was called while learn.fit is running \(from "
                                           r"Nested.after_epoch\)"):
        learn.fit(3, cbs=Nested())
    learn.fit(2)  # not stuck in a "fitting" state
    assert learn.n_epoch == 2 and len(learn.recorder.values) == 2


def test_skipped_items_never_leave_a_training_batch_of_one_for_batchnorm():
    """on_error='skip' turned a batch of 2 into a batch of 1, which BatchNorm refuses in training."""
    from learnkit.core import CategoryBlock, DataBlock, IndexSplitter, TransformBlock

    def get_x(i):
        if i == 3:
            raise ValueError("unreadable")
        return torch.tensor([float(i % 2), 1.0 - i % 2, 0.5])

    dblock = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=get_x, get_y=lambda i: "ab"[i % 2],
                       splitter=IndexSplitter([10, 11]))
    with pytest.warns(UserWarning, match="skipped 3"):
        dls = dblock.dataloaders(list(range(12)), bs=2, device="cpu", num_workers=0, on_error="skip")
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), progress=False)
        learn.fit(2)
        sizes = [len(b[0]) for b in dls.train]  # another pass over the loader: it warns again
    assert 1 not in sizes and sum(sizes) >= 8  # the single item was merged into another batch (or dropped last)


def test_export_to_a_folder_or_an_empty_name_writes_a_named_file_and_says_where(tmp_path):
    learn = _exportable(tmp_path)
    with pytest.warns(UserWarning, match="is a folder: writing the export into it as export.safetensors"):
        assert learn.export(tmp_path) == tmp_path / "export.safetensors"
    with pytest.warns(UserWarning, match="empty file name; writing it to .*export.safetensors"):
        assert learn.export("") == tmp_path / "export.safetensors"


def test_a_model_that_cannot_be_written_where_asked_goes_to_a_rescue_file(tmp_path, monkeypatch):
    from learnkit import load_learner
    monkeypatch.setenv("LEARNKIT_RESCUE_DIR", str(tmp_path / "rescued"))
    learn = _exportable(tmp_path)
    (tmp_path / "a_file").write_text("in the way")
    with pytest.raises(OSError, match="cannot create the folder .*a_file.*; the export was saved to .*rescued.* "
                                      "instead") as err:
        learn.export(tmp_path / "a_file" / "m.safetensors")
    rescued = Path(re.search(r"was saved to (\S+) instead", str(err.value)).group(1))
    assert load_learner(rescued, device="cpu").dls.vocab == learn.dls.vocab
    with pytest.raises(OSError, match=r"the model \(m.pth\) was saved to .*rescued.*m-.*\.pth instead"):
        learn.save(tmp_path / "a_file" / "m")


def test_home_and_environment_variables_are_expanded_in_paths(tmp_path, monkeypatch):
    from learnkit import load_learner
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LK_RUNS", str(tmp_path / "runs"))
    learn = _exportable("~/project")
    assert learn.path == tmp_path / "home" / "project"
    assert learn.export("~/m.safetensors") == tmp_path / "home" / "m.safetensors"
    assert learn.export("$LK_RUNS/m.safetensors") == tmp_path / "runs" / "m.safetensors"
    assert learn.save("${LK_RUNS}/w") == tmp_path / "runs" / "w.pth"
    assert not (tmp_path / "home" / "project" / "~").exists()
    assert load_learner("~/m.safetensors", device="cpu").dls.vocab == learn.dls.vocab


def test_text_and_tabular_refuse_one_class_and_mixed_label_types_as_the_other_tasks_do():
    import pandas as pd
    from learnkit.tabular import TabularDataLoaders
    from learnkit.text import TextDataLoaders
    texts = [f"word{i} film" for i in range(40)]
    with pytest.raises(ValueError, match="all 40 texts have the same label 'pos'.*at least two classes"):
        TextDataLoaders.from_df(pd.DataFrame({"text": texts, "label": ["pos"] * 40}), tok="words", min_freq=1,
                                device="cpu")
    mixed = [1 if i % 2 else "1" for i in range(40)]
    with pytest.raises(ValueError, match=r"mix types: 1 \(int\) and '1' \(str\) would be two different classes"):
        TextDataLoaders.from_df(pd.DataFrame({"text": texts, "label": mixed}), tok="words", min_freq=1, device="cpu")
    df = pd.DataFrame({"x": torch.randn(100).tolist(), "y": [1 if i % 2 else "1" for i in range(100)]})
    with pytest.raises(ValueError, match=r"target 'y' mix types: 1 \(int\) and '1' \(str\).*astype\(str\)"):
        TabularDataLoaders.from_df(df, cont_names=["x"], y_names="y", device="cpu")


@pytest.mark.parametrize("bad, match", [
    (lambda p, t: (_ for _ in ()).throw(KeyError("boom")), r"metric 'bad' failed \(accumulate.*KeyError: 'boom'"),
    (lambda p, t: "0.5", r"metric 'bad' failed .*returned '0.5' \(str\); a metric returns one number"),
    (lambda p, t: None, r"metric 'bad' failed .*returned None"),
    (lambda p, t: p[:, 0], r"metric 'bad' failed .*returned a tensor of shape \[\d+\]"),
])
def test_a_metric_that_fails_is_named(bad, match):
    from learnkit.core.metricbase import AvgMetric
    learn = Learner(make_dls(*two_class_data(80), bs=16), nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(),
                    metrics=AvgMetric(bad, name="bad"), progress=False)
    with pytest.raises((KeyError, TypeError), match=match):
        learn.fit(1)


def test_clearer_messages_for_split_masks_missing_labels_and_string_valid_columns():
    import numpy as np
    import pandas as pd
    from learnkit.core import CategoryBlock, ColReader, ColSplitter, DataBlock, RandomSplitter, TransformBlock

    def masks(items):
        m = np.arange(len(items)) % 5 == 0
        return list(~m), list(m)

    df = pd.DataFrame({"x": range(40), "y": pd.Series(["ab"[i % 2] for i in range(40)], dtype=object)})
    block = DataBlock(blocks=(TransformBlock, CategoryBlock), get_y=ColReader("y"), splitter=masks)
    with pytest.raises(ValueError, match="boolean mask for the training set .*expected indices"):
        block.dataloaders(df, bs=4, device="cpu")
    df.loc[3, "y"] = pd.NA
    block = DataBlock(blocks=(TransformBlock, CategoryBlock), get_y=ColReader("y"), splitter=RandomSplitter(0.2))
    with pytest.raises(ValueError, match=r"row 3 .*the value is missing \(<NA>\)"):
        block.dataloaders(df, bs=4, device="cpu")
    s = pd.DataFrame({"is_valid": pd.Series(["True" if i % 4 == 0 else "False" for i in range(8)], dtype="str")})
    assert ColSplitter("is_valid")(s) == ([1, 2, 3, 5, 6, 7], [0, 4])
    block = DataBlock(blocks=(TransformBlock, CategoryBlock), get_y=lambda i: "ab"[i % 2], splitter=RandomSplitter(0.99))
    with pytest.raises(ValueError, match="same label .*the split left more than one class in training"):
        block.dataloaders(list(range(60)), bs=4, device="cpu")


def test_cli_checks_out_before_training_and_names_its_own_flags(tmp_path, capsys):
    from learnkit.cli import main
    from coretools import write_two_class_images
    photos = tmp_path / "photos"
    write_two_class_images(photos, n=8)
    assert main(["train", "images", str(photos), "--out", str(tmp_path), "--no-pretrained"]) == 1
    err = capsys.readouterr().err
    assert "--out" in err and "is a folder" in err and "nothing was trained" in err
    (photos / "nomatch.png").write_bytes((photos / "a_0.png").read_bytes())  # the regex does not label it
    assert main(["train", "images", str(photos), "--label-re", r"^(\w)_\d+\.png$", "--out",
                 str(tmp_path / "m.safetensors"), "--no-pretrained"]) == 1
    err = capsys.readouterr().err
    assert "--on-error skip" in err and "on_error=" not in err
