"""ProfilerCallback / learn.profile (issue 27): the table's parts sum to 1, data wait falls when workers are
added, the bottleneck sentence names the knob, a Chrome trace when asked, LEARNKIT_PROFILE=1 prints it."""
from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from learnkit import DataLoaders, Learner, MSELossFlat, ProfilerCallback
from learnkit.core.callbacks.profiler import PARTS


class SlowDs(Dataset):
    """Decoding that takes 3 ms an item (a sleep: it parallelises across workers even on a busy machine)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        time.sleep(0.003)
        return torch.full((4,), float(i % 7)), torch.tensor([float(i % 3)])


class SlowModel(nn.Module):
    """A forward pass that takes 25 ms (as a GPU would, leaving the host free)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x):
        time.sleep(0.025)
        return self.lin(x)


def _learner(workers: int) -> Learner:
    # not persistent: torch then joins the workers at once when the learner goes (persistent ones that paused
    # at the end of an epoch wait out a 5 s timeout each)
    kw = dict(num_workers=workers, persistent_workers=False)
    dls = DataLoaders(DataLoader(SlowDs(256), batch_size=8, shuffle=True, **kw), DataLoader(SlowDs(32), batch_size=16, **kw),
                      device="cpu")
    return Learner(dls, SlowModel(), loss_func=MSELossFlat(), progress=False)


def test_data_wait_falls_with_workers_and_fractions_sum_to_one():
    reports = {}
    for workers in (0, 2):
        learn = _learner(workers)
        w = learn.model.lin.weight.detach().clone()
        reports[workers] = learn.profile(n_batches=12, skip=3, show=False)
        assert torch.equal(learn.model.lin.weight, w)  # the weights are put back
    r0, r2 = reports[0], reports[2]
    for r in (r0, r2):
        assert set(r.fractions) == set(PARTS) and sum(r.fractions.values()) == pytest.approx(1, abs=0.02)
        assert r.n_batches == 12 and r.seconds["forward"] > 12 * 0.02
        assert r.seconds["validation"] > 0
    # 8 items x 3 ms = 24 ms of decoding per batch: in the loop without workers, overlapped with 2
    assert r0.fractions["data wait"] > 0.3 and r2.fractions["data wait"] < r0.fractions["data wait"] / 2
    assert "num_workers (now 0)" in str(r0) or r0.bottleneck != "data wait"
    assert r0.bottleneck in ("data wait", "forward")


def test_bottleneck_sentence_and_chrome_trace(tmp_path):
    learn = _learner(0)
    trace = tmp_path / "trace.json"
    prof = ProfilerCallback(n_batches=4, skip=1, trace=trace)
    learn.fit(1, cbs=[prof])
    events = json.loads(trace.read_text())["traceEvents"]
    assert any("aten::addmm" in e.get("name", "") or "aten::linear" in e.get("name", "") for e in events)
    rep = prof.report
    assert rep.n_batches == 4
    assert rep.advice.startswith(f"{rep.bottleneck} is ")
    assert [ln.split()[0] for ln in str(rep).splitlines()[2:2 + len(PARTS)]] == [p.split()[0] for p in PARTS]


def test_learnkit_profile_env_prints_a_table_and_is_absent_otherwise(monkeypatch, capsys):
    learn = _learner(0)
    seen = []
    from learnkit.core.callback import Callback

    class Spy(Callback):
        def before_fit(self):
            seen.append([type(cb).__name__ for cb in self.learn.cbs])
    monkeypatch.delenv("LEARNKIT_PROFILE", raising=False)
    learn.fit(1, cbs=Spy(), max_steps=2)
    assert "ProfilerCallback" not in seen[-1]  # off: no profiler in the loop at all
    monkeypatch.setenv("LEARNKIT_PROFILE", "1")
    learn.fit(1, cbs=Spy(), max_steps=8)
    assert "ProfilerCallback" in seen[-1]
    out = capsys.readouterr().out
    assert "data wait" in out and "optimizer step" in out and " % of the time: " in out
