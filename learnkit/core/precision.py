"""Numerics and layout choices that depend on the device: channels-last, mixed precision, TF32.

Kept apart from `Learner` so that the rules can be read (and tested without a GPU) in one place.

>>> from torch import nn
>>> memory_format_for(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())) == torch.channels_last
True
>>> memory_format_for(nn.Conv3d(3, 4, 3)) == torch.channels_last_3d
True
>>> memory_format_for(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv3d(4, 4, 3))) is None
True
"""
from __future__ import annotations

import ctypes
import os
import sys

import torch
from torch import nn

__all__ = ["memory_format_for", "restored_precision", "cuda_speedups", "native_bf16", "reuse_cpu_memory"]


def memory_format_for(model: nn.Module) -> torch.memory_format | None:
    """The channels-last layout that fits every conv weight of ``model``: ``channels_last`` when all are 4-D
    (2-D convolutions), ``channels_last_3d`` when all are 5-D (3-D convolutions), else ``None`` (no
    convolutions, 1-D ones, or a mix of ranks, where no single layout fits)."""
    ranks = {m.weight.dim() for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)}
    if ranks == {4}:
        return torch.channels_last
    if ranks == {5}:
        return torch.channels_last_3d
    return None


def native_bf16(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` (default: a CUDA GPU if there is one, else the CPU) computes bfloat16 natively, so
    that ``learn.to_bf16()`` makes training faster: a CUDA GPU that supports it, or a Linux CPU with the
    AVX512-BF16 or AMX-BF16 instructions (on other CPUs bf16 autocast is emulated and slower than fp32).

    >>> isinstance(native_bf16("cpu"), bool)
    True
    """
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def restored_precision(saved: str, device: torch.device) -> str:
    """The precision a loaded export runs in: mixed precision only where it pays (CUDA); fp32 elsewhere.

    A bf16-trained model is a full fp32 model with its weights as trained; on a CPU, bf16 autocast would
    only make inference slower and less exact, so it loads in fp32.

    >>> restored_precision("bf16", torch.device("cpu")), restored_precision("bf16", torch.device("cuda"))
    ('fp32', 'bf16')
    """
    return saved if saved in ("fp16", "bf16") and device.type == "cuda" else "fp32"


def cuda_speedups(device: torch.device) -> bool:
    """On CUDA, let float32 matmuls and convolutions use TF32 tensor cores (``torch.set_float32_matmul_precision
    ("high")``, ``cudnn.allow_tf32``) and let cuDNN pick the fastest algorithm per input shape
    (``cudnn.benchmark``). `Learner` calls this when it is placed on CUDA. Opt out with
    ``LEARNKIT_CUDA_SPEEDUPS=0`` (bit-for-bit fp32 matmuls, deterministic algorithm choice); after
    ``set_seed(s, reproducible=True)`` (deterministic algorithms on) nothing is changed either. Returns
    whether it changed anything."""
    if device.type != "cuda" or os.environ.get("LEARNKIT_CUDA_SPEEDUPS", "1") == "0":
        return False
    if torch.are_deterministic_algorithms_enabled():
        return False
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    return True


def reuse_cpu_memory(limit_mb: int = 1024) -> bool:
    """Let this process keep the host memory it frees (up to ``limit_mb`` per allocation and of free memory
    kept) for its next allocations, instead of handing it back to the operating system at each ``free``.

    glibc's malloc serves every block over 32 MB (and by default many smaller ones) with a fresh ``mmap`` and
    returns it at once, so a CPU training step that allocates the same large activations again pays a page fault
    for every 4 KB of them, each time: on a 2-core CPU, ``examples/imdb.py`` spent 62 s of system time (31 M
    page faults) and ``examples/camvid.py`` 108 s that way (``benchmarks/RESULTS.md``). This sets glibc's
    ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (``mallopt(3)``) to ``limit_mb``: the memory is reused from
    the heap, at the price of a resident size that stays near its peak. It applies to the whole process
    (and to loader workers forked after it). Returns whether it was set: ``False`` where the C library is not
    glibc (macOS, Windows, musl).

    >>> isinstance(reuse_cpu_memory(), bool)
    True
    """
    if isinstance(limit_mb, bool) or not isinstance(limit_mb, int) or not 1 <= limit_mb <= 1 << 20:
        raise ValueError(f"limit_mb must be a whole number of megabytes between 1 and 1048576, got {limit_mb!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl's mallopt ignores these settings
    except (OSError, AttributeError):
        return False
    size = limit_mb << 20
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, size)) and bool(mallopt(M_TRIM_THRESHOLD, size))
