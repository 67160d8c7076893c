"""Device placement and device-dependent numerics, checked without a GPU: pure functions, the ``meta``
device, and a one-process gloo group (issue 15)."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset

from learnkit import Callback, CrossEntropyLossFlat, DataLoaders, Learner, set_seed
from learnkit.core import device as device_mod
from learnkit.core.distributed import DistributedTrainer, move_learner
from learnkit.core.precision import cuda_speedups, memory_format_for


def _learner(model: nn.Module, x: torch.Tensor, n_out: int = 2, **kw) -> Learner:
    y = torch.randint(0, n_out, (len(x),))
    dls = DataLoaders.from_dsets(TensorDataset(x, y), TensorDataset(x, y), bs=4, device="cpu")
    return Learner(dls, model, progress=False, **kw)


@pytest.fixture
def fake_gpus(monkeypatch):
    """Four visible GPUs as far as the device choice can tell (nothing is allocated)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_cuda_without_index_means_this_ranks_gpu(fake_gpus, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.delenv("LEARNKIT_DEVICE", raising=False)
    assert device_mod.default_device("cuda") == torch.device("cuda", 3)  # not cuda:0 first, then moved
    assert device_mod.default_device(None) == torch.device("cuda", 3)
    monkeypatch.setenv("LEARNKIT_DEVICE", "cuda")
    assert device_mod.default_device(None) == torch.device("cuda", 3)
    assert device_mod.default_device("cuda:1") == torch.device("cuda", 1)  # an explicit index is kept
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert device_mod.default_device("cuda") == torch.device("cuda", 1)  # modulo the visible GPUs
    monkeypatch.delenv("LOCAL_RANK")
    assert device_mod.default_device("cuda") == torch.device("cuda", 0)


def test_moving_a_learner_moves_its_loss_buffers():
    """Class weights must follow the model (to cuda:LOCAL_RANK under DDP); the meta device stands in."""
    loss = CrossEntropyLossFlat(weight=torch.tensor([1.0, 3.0]))
    learn = _learner(nn.Linear(3, 2), torch.randn(8, 3), loss_func=loss)
    move_learner(learn, torch.device("meta"))
    assert learn.device.type == learn.dls.device.type == "meta"
    assert next(learn.model.parameters()).device.type == "meta"
    assert all(b.device.type == "meta" for b in learn.loss_func.buffers())


def test_channels_last_fits_3d_convolutions():
    """to_fp16/to_bf16 switch conv nets to channels-last on CUDA; a Conv3d needs channels_last_3d."""
    model3d = nn.Sequential(nn.Conv3d(2, 4, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2))
    learn = _learner(model3d, torch.randn(8, 2, 5, 5, 5), loss_func=CrossEntropyLossFlat())
    learn.to_channels_last()
    assert learn.model[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    learn.device = torch.device("cuda")  # only the rule's input: nothing is moved
    learn._channels_last_on_cuda()
    mixed = nn.Sequential(nn.Conv2d(2, 2, 3), nn.Conv3d(2, 2, 1))
    assert memory_format_for(mixed) is None and memory_format_for(nn.Linear(2, 2)) is None
    assert memory_format_for(nn.Conv2d(1, 1, 1)) == torch.channels_last


def test_tf32_and_cudnn_benchmark_on_cuda_only(monkeypatch):
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.benchmark = False
        assert not cuda_speedups(torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == "highest"
        monkeypatch.setenv("LEARNKIT_CUDA_SPEEDUPS", "0")
        assert not cuda_speedups(torch.device("cuda", 0)) and not torch.backends.cudnn.benchmark
        monkeypatch.delenv("LEARNKIT_CUDA_SPEEDUPS")
        assert cuda_speedups(torch.device("cuda", 0))
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.benchmark
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = before[1], before[2]


@pytest.fixture
def one_process_group():
    """A gloo process group of one rank (DDP runs, nothing to talk to)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_compile_under_ddp_compiles_the_ddp_wrapper(one_process_group):
    class Seen(Callback):
        def after_pred(self):
            self.wrapper = getattr(self.learn.ddp_model, "_compiled_call_impl", None) is not None
            self.inner = getattr(self.learn.model, "_compiled_call_impl", None) is not None

    seen = Seen()
    learn = _learner(nn.Linear(3, 2), torch.randn(8, 3), loss_func=CrossEntropyLossFlat(), cbs=[seen])
    learn.add_cb(DistributedTrainer())
    learn.compile(backend="eager")
    learn.fit(1)
    assert seen.wrapper and not seen.inner


def test_loaders_pin_memory_for_the_learners_device_only():
    """Pinning follows the device batches go to (the learner's), not whether this machine has a GPU."""
    from learnkit import make_loader
    from learnkit.text.batching import TextDataset
    from learnkit.text.data import TextDataLoaders
    from learnkit.text.tokenize import WordTokenizer
    ds = TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    pinned = make_loader(ds, bs=4, device="cpu")
    pinned.pin_memory = True  # as built on a CUDA machine
    dls = DataLoaders(pinned, make_loader(ds, bs=4, device="cpu"), device="cpu")
    Learner(dls, nn.Linear(3, 2), loss_func=CrossEntropyLossFlat(), device="cpu", progress=False)
    assert not dls.train.pin_memory and not dls.valid.pin_memory
    texts = ["a b", "b c d", "a"]
    tok = WordTokenizer.train(texts, min_freq=1)
    tds = TextDataset(texts, tok.encode_batch(texts), [0, 1, 0])
    tdls = TextDataLoaders.from_datasets(tds, tds, tok, ["x", "y"], bs=2, device="cpu")
    assert not tdls.train.pin_memory and not tdls.valid.pin_memory


def test_set_seed_offsets_by_rank(monkeypatch):
    import random

    monkeypatch.setenv("RANK", "3")
    assert set_seed(10) == 10 and set_seed(10, by_rank=True) == 13
    a = (torch.rand(1), random.random())
    set_seed(13)
    assert (torch.rand(1), random.random()) == a


def test_set_seed_reproducible_turns_on_deterministic_kernels():
    try:
        set_seed(3, reproducible=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        assert cuda_speedups(torch.device("cuda")) is False  # reproducible wins over the CUDA speed-ups
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
