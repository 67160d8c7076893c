"""Atomic writes keep the replaced file's permissions, and the next successful write removes the temporary
files that a killed writer left behind (issue: exports became mode 0600 and killed exports leaked temp files)."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from learnkit import Learner, MSELossFlat, atomic_write, load_learner


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_overwrite_keeps_the_permission_bits(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    atomic_write(target, lambda tmp: tmp.write_bytes(b"new"))
    assert target.read_bytes() == b"new" and _mode(target) == 0o644
    os.chmod(target, 0o640)
    atomic_write(target, lambda tmp: tmp.write_bytes(b"newer"))
    assert _mode(target) == 0o640


def test_a_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "fresh.bin", lambda tmp: tmp.write_bytes(b"x"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "fresh.bin") == 0o644  # not mkstemp's 0600


def test_temp_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "export.safetensors"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from learnkit import atomic_write
        def slow(tmp):
            tmp.write_bytes(b"partial")
            Path({str(tmp_path / 'ready')!r}).write_text("x")
            time.sleep(60)
        atomic_write({str(target)!r}, slow)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    deadline = time.time() + 60
    while not (tmp_path / "ready").exists() and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    leftovers = [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
    assert len(leftovers) == 1 and not target.exists()  # the kill left its temp file, and no half-written target
    atomic_write(target, lambda tmp: tmp.write_bytes(b"complete"))
    assert target.read_bytes() == b"complete"
    assert [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")] == []


def test_unreadable_export_says_so(tmp_path, monkeypatch):
    from torch.utils.data import TensorDataset

    from learnkit import DataLoaders
    ds = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
    learn = Learner(DataLoaders.from_dsets(ds, ds, bs=4, device="cpu"), nn.Linear(2, 1), loss_func=MSELossFlat(),
                    progress=False)
    path = learn.save(tmp_path / "weights")
    os.chmod(path, 0o200)
    if os.geteuid() == 0:  # root reads every file whatever its mode: answer as an ordinary user would be answered
        monkeypatch.setattr(os, "access", lambda p, mode: not (Path(p) == path and mode == os.R_OK))
    with pytest.raises(PermissionError, match=r"cannot read it \(permissions --w-------\).*chmod a\+r"):
        load_learner(path)
