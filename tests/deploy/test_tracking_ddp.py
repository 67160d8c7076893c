"""Under DDP (two CPU processes through torchrun, gloo) only rank 0 writes the TensorBoard run, and every
epoch in it carries the gathered validation loss both ranks computed."""
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


def _worker(out: Path) -> None:
    from learnkit import CrossEntropyLossFlat, DataLoaders, Learner, TensorBoardCallback, make_loader, rank_distrib
    rank = int(os.environ["RANK"])
    writes: list[str] = []

    def hook(event, args):  # every file this rank opens for writing under out/tb
        if event == "open" and isinstance(args[0], (str, os.PathLike)) and str(args[0]).startswith(str(out / "tb")):
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR)):
                writes.append(str(args[0]))
        elif event == "os.mkdir" and str(args[0]).startswith(str(out / "tb")):
            writes.append(str(args[0]))

    sys.addaudithook(hook)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    y = (x.sum(1) > 0).long()
    dls = DataLoaders(make_loader(TensorDataset(x[16:], y[16:]), bs=8, shuffle=True, seed=rank),
                      make_loader(TensorDataset(x[:16], y[:16]), bs=8))
    learn = Learner(dls, nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), progress=False)
    learn.fit(2, 1e-2, cbs=TensorBoardCallback(out / "tb", log_every=1))
    (out / f"result{rank}.json").write_text(json.dumps({"rank": rank_distrib(), "writes": writes,
                                                        "values": learn.recorder.values}))


def test_only_rank0_writes_under_ddp(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "LEARNKIT_DEVICE": "cpu",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("LEARNKIT_DISTRIBUTED", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).resolve()), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1))
    assert (r0["rank"], r1["rank"]) == (0, 1)
    assert r1["writes"] == [] and r0["writes"]  # rank 1 never touched the run folder
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    logged = [round(e.value, 5) for e in acc.Scalars("epoch/valid_loss")]
    assert logged == [round(v[1], 5) for v in r0["values"]] == [round(v[1], 5) for v in r1["values"]]


if __name__ == "__main__":  # one rank, started by torchrun from the test above
    _worker(Path(sys.argv[1]))
