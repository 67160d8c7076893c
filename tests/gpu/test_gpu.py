"""CUDA: device placement, fp16/bf16 mixed precision, channels-last, torch.compile, and DDP over NCCL.

Every test is marked ``gpu`` and skips without CUDA (tests/conftest.py); the DDP test also needs two GPUs.
Throughput numbers (fp32 vs fp16 vs bf16, eager vs compiled) come from ``benchmarks/precision.py``.
"""
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

from learnkit import Callback, CrossEntropyLossFlat, DataLoaders, Learner, accuracy

pytestmark = pytest.mark.gpu


def _conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))


def _image_dls(n: int = 512, bs: int = 64) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long()  # learnable: the sign of the red channel's mean
    x[:, 0] += (y.float() * 2 - 1)[:, None, None] * 0.5
    n_valid = n // 4
    return DataLoaders.from_dsets(TensorDataset(x[n_valid:], y[n_valid:]), TensorDataset(x[:n_valid], y[:n_valid]),
                                  bs=bs, device="cuda")


class _Seen(Callback):
    """Records the device and dtype of the inputs and of the predictions of the last training batch."""

    def after_pred(self):
        if self.learn.training:
            self.x_device, self.pred_dtype = self.learn.xb[0].device, self.learn.pred.dtype


def test_device_placement():
    seen = _Seen()
    learn = Learner(_image_dls(), _conv_net(), loss_func=CrossEntropyLossFlat(), cbs=seen, progress=False)
    assert learn.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in learn.model.parameters())
    learn.fit(1)
    assert seen.x_device.type == "cuda" and seen.pred_dtype == torch.float32
    probs, targs = learn.get_preds()
    assert probs.device.type == "cpu" and len(probs) == len(targs) == 128  # results come back to the CPU


def test_loss_buffers_follow_the_model_to_the_device():
    weighted = CrossEntropyLossFlat(weight=torch.tensor([1.0, 3.0]))  # created on the CPU
    learn = Learner(_image_dls(), _conv_net(), loss_func=weighted, progress=False)
    assert learn.loss_func.weight.device.type == "cuda"
    learn.fit(1)  # would fail with "weight is on cpu, different from other tensors on cuda:0"
    assert torch.isfinite(torch.tensor(learn.recorder.values[-1][0]))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_trains(precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    seen = _Seen()
    learn = Learner(_image_dls(), _conv_net(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, lr=3e-3,
                    cbs=seen, progress=False)
    getattr(learn, f"to_{precision}")()
    assert learn.precision == precision and learn.scaler.is_enabled() == (precision == "fp16")
    assert learn.model[0].weight.is_contiguous(memory_format=torch.channels_last)  # conv net on CUDA
    learn.fit_one_cycle(4)
    assert seen.pred_dtype == (torch.float16 if precision == "fp16" else torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # master weights stay fp32
    train_loss, valid_loss, acc = learn.recorder.values[-1]
    assert torch.isfinite(torch.tensor([train_loss, valid_loss])).all()
    assert acc > 0.8
    if precision == "fp16":
        assert learn.scaler.get_scale() > 0


def test_compile_trains_and_keeps_weight_names():
    learn = Learner(_image_dls(), _conv_net(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, lr=3e-3,
                    progress=False)
    keys = list(learn.model.state_dict())
    learn.to_bf16() if torch.cuda.is_bf16_supported() else learn.to_fp16()
    learn.compile()
    learn.fit_one_cycle(3)
    assert list(learn.model.state_dict()) == keys
    assert learn.recorder.values[-1][2] > 0.8


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP over NCCL needs two GPUs")
def test_ddp_nccl_two_gpus(tmp_path):
    """The CPU DDP test's worker (tests/core/test_distributed.py), on two GPUs with NCCL."""
    env = {**os.environ, "LEARNKIT_PROGRESS": "0"}
    for v in ("LEARNKIT_DEVICE", "LEARNKIT_DISTRIBUTED", "CUDA_VISIBLE_DEVICES"):
        env.pop(v, None)
    worker = Path(__file__).resolve().parents[1] / "core" / "test_distributed.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           "--worker", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1))
    from safetensors.torch import load_file
    w0, w1 = (load_file(str(tmp_path / f"weights{r}.safetensors")) for r in (0, 1))
    assert r0["distributed"] and r1["distributed"] and r0["init_sum"] != r1["init_sum"]
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert r0["values"] == r1["values"]
    for ids in r0["valid_ids"] + r1["valid_ids"]:
        assert sorted(ids) == list(range(91, 128))
    assert r1["writes"] == []
