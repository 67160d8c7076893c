import os
import subprocess
import sys
from collections import namedtuple

import pytest
import torch

from learnkit import batch_size, default_device, to_device


def test_default_device_env_override(monkeypatch):
    monkeypatch.setenv("LEARNKIT_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.delenv("LEARNKIT_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert default_device().type == expected
    assert default_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_asking_for_cuda_without_it_is_clear():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        default_device("cuda")


def test_to_device_nested():
    NT = namedtuple("NT", "a b")
    batch = {"x": [torch.ones(2), (torch.zeros(1), 3)], "nt": NT(torch.ones(1), "s")}
    out = to_device(batch, "cpu")
    assert isinstance(out["nt"], NT) and out["nt"].b == "s" and out["x"][1][1] == 3
    assert out["x"][0].device.type == "cpu"
    assert batch_size(({"a": torch.ones(5, 2)}, torch.ones(5))) == 5


@pytest.mark.gpu
def test_learner_places_model_and_batches_on_cuda():
    from torch.utils.data import TensorDataset

    from learnkit import DataLoaders, Learner, MSELossFlat
    x = torch.randn(64, 3)
    dls = DataLoaders.from_dsets(TensorDataset(x, x.sum(1, keepdim=True)), bs=16)
    learn = Learner(dls, torch.nn.Linear(3, 1), loss_func=MSELossFlat(), progress=False)
    assert next(learn.model.parameters()).device.type == "cuda"
    learn.fit(1)
    assert learn.xb[0].device.type == "cuda"


def test_native_bf16_reads_the_cpu_flags_and_is_false_elsewhere(monkeypatch, tmp_path):
    """``native_bf16`` is true for a CPU whose /proc/cpuinfo lists AVX512-BF16 or AMX-BF16, false for one that
    lists neither, for an unreadable cpuinfo and for a device that is neither CPU nor CUDA."""
    import builtins

    from learnkit import native_bf16
    from learnkit.core import precision
    real_open = builtins.open

    def fake(flags):
        info = tmp_path / f"cpuinfo_{len(flags)}"
        info.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n")
        return lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo" else path, *a, **k)

    monkeypatch.setattr(precision, "open", fake("avx512f avx512_bf16"), raising=False)
    assert native_bf16("cpu") is True
    monkeypatch.setattr(precision, "open", fake("amx_tile amx_bf16"), raising=False)
    assert native_bf16("cpu") is True
    monkeypatch.setattr(precision, "open", fake("avx512f"), raising=False)
    assert native_bf16("cpu") is False

    def missing(path, *a, **k):
        raise FileNotFoundError(path)
    monkeypatch.setattr(precision, "open", missing, raising=False)
    assert native_bf16("cpu") is False
    assert native_bf16("meta") is False


_FAULTS = """
import resource, sys, torch
if sys.argv[1] == "reuse":
    from learnkit import reuse_cpu_memory
    assert reuse_cpu_memory()
for _ in range(3):  # warm up: the heap grows once
    torch.ones(16 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # 64 MB allocated, written and freed ten times
    torch.ones(16 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "confstr")
                    or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""), reason="glibc's malloc only")
def test_reuse_cpu_memory_stops_the_page_faults_of_a_repeated_large_allocation():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])
    default, reused = faults("default"), faults("reuse")
    assert default > 10 * 16_000 * 0.9   # each 64 MB block mapped afresh: ~16k faults of 4 KB, ten times
    assert reused < default / 20         # kept in the heap and reused


def test_reuse_cpu_memory_checks_its_limit():
    from learnkit import reuse_cpu_memory
    for bad in (0, -5, 1.5, True, 1 << 21):
        with pytest.raises(ValueError, match="limit_mb"):
            reuse_cpu_memory(bad)
