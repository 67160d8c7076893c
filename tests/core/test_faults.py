"""Issue 19: interrupted runs. SIGINT (Ctrl-C) at a random batch of `fit`, `fine_tune` and `lr_find` leaves a
learner with consistent weights that trains on; SIGKILL during `save`, `export` and checkpoint writes leaves the
previous file loadable, and the next successful write leaves no temp file."""
from __future__ import annotations

import os
import random
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
