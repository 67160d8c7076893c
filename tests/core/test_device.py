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
