"""The sampling machinery of `ActivationStats`: which activations a layer's sample reads, the sums its
statistics come from, fastai's 40-bin histograms, and the neighbouring layers one hook can sample together.

>>> _finish(torch.stack(_moments(torch.tensor([0.0, 2.0]), torch.empty(2)))[None], torch.tensor([2.0]))
tensor([[1.0000, 1.4142, 0.5000]])
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

__all__: list[str] = []  # internal: `learnkit.core.activation_stats` is the public module

_STATS = ("mean", "std", "near_zero")
_BINS = 40        # fastai's histogram: 40 bins of width 0.25 over [0, 10]
_CODES = _BINS + 2  # per layer: below 0, the 40 bins, 10 and above
_NEAR_ZERO = 0.05   # fastai's "near zero": at most 0.05
_CHUNK_BYTES = 16 << 20  # the sample buffer holds up to 16 batches within this size (then one flush for them all)


def _flat(o: torch.Tensor) -> torch.Tensor:
    """``o`` as one flat float32 vector, without a copy when it is contiguous in some layout (channels-last
    included) and already float32."""
    if o.dtype != torch.float32:
        o = o.float()
    if o.ndim == 4 and not o.is_contiguous() and o.is_contiguous(memory_format=torch.channels_last):
        return o.permute(0, 2, 3, 1).reshape(-1)
    return o.reshape(-1)


def _moments(f: torch.Tensor, scratch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sum, sum of squares, count of values above 0.05)`` of the flat float32 vector ``f``, 0-d tensors on its
    device (`_finish` turns them into mean, std and near-zero fraction, once, on the CPU); ``scratch`` is a float32
    vector of at least ``f.numel()`` on the same device. Four ops, no host sync: a sum, a dot product, a comparison
    written as floats and its sum — several times cheaper on a CPU than ``torch.std_mean``, or than a comparison's
    bool tensor counted.

    >>> f = torch.tensor([0.0, 0.05, 1.0, 3.0])
    >>> raw = torch.stack(_moments(f, torch.empty(4)))
    >>> [round(v, 4) for v in _finish(raw[None], torch.tensor([4.0])).flatten().tolist()]
    [1.0125, 1.4026, 0.5]
    """
    return f.sum(), torch.dot(f, f), torch.gt(f, _NEAR_ZERO, out=scratch[:f.numel()]).sum()


def _finish(raw: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` raw sums (`_moments`) over ``n`` values each to ``[..., 3]`` mean, std (unbiased) and
    near-zero fraction (the values ``<= 0.05``), computed in float64. ``n == 0`` (a layer that did not run)
    gives NaN."""
    raw, n = raw.double(), n.double()
    s, ss, above = raw.unbind(-1)
    mean = s / n
    var = ((ss - s * mean) / (n - 1).clamp_min(1)).clamp_min(0)
    return torch.stack([mean, var.sqrt(), (n - above) / n], -1).float()


def _spread_index(numel: int, m: int, device: torch.device) -> torch.Tensor:
    """``m`` distinct positions in ``range(numel)`` (``m <= numel``), sorted and spread evenly, without a period
    that could line up with channels or rows: runs of 16 neighbours (one 64-byte cache line of float32, so a
    gather reads ``m / 16`` lines, not ``m``) starting at ``16 (k p mod numel // 16)``, for a ``p`` coprime with
    ``numel // 16`` near ``0.618`` of it (the golden ratio's low-discrepancy sequence); single positions when
    ``m`` is not a multiple of 16. Computed on ``device``: no transfer.

    >>> _spread_index(10, 4, torch.device("cpu")).tolist()
    [0, 1, 4, 7]
    >>> _spread_index(100, 32, torch.device("cpu")).view(2, 16)[:, 0].tolist()   # 2 runs among 6 of 16
    [0, 80]
    """
    run = 16 if m % 16 == 0 else 1
    slots = numel // run
    p = max(1, round(slots * (math.sqrt(5) - 1) / 2))
    while math.gcd(p, slots) != 1:
        p += 1
    starts = (torch.arange(m // run, device=device, dtype=torch.int64) * p % slots).sort().values * run
    return (starts[:, None] + torch.arange(run, device=device, dtype=torch.int64)).view(-1)


@functools.lru_cache(maxsize=256)
def _positions(numel: int, m: int, device: torch.device) -> torch.Tensor:
    """`_spread_index`, computed once per ``(numel, m, device)`` in the process (a few hundred microseconds a
    layer, which a fresh callback per one-epoch ``fit``, fastbook's way, would pay every time). Read-only:
    never write into the result. At most 256 index tensors of ``m`` int64 are kept (8 MB at ``m=4096``).

    >>> _positions(10, 4, torch.device("cpu")) is _positions(10, 4, torch.device("cpu"))
    True
    """
    with torch.inference_mode(False):  # a normal tensor, usable inside and outside inference mode
        return _spread_index(numel, m, device)


def _chained(model: nn.Module, mods: list[nn.Module]) -> dict[nn.Module, nn.Module]:
    """``{B: A}`` for hooked layers ``A`` and ``B`` that are neighbours in an ``nn.Sequential`` (one that keeps
    ``nn.Sequential.forward``): ``B`` is called with ``A``'s output, so ``B``'s hook can sample it too
    (a convolution and its batch norm: one hook instead of two). Only candidates: the first recorded batch
    confirms each pair on the tensors themselves (`ActivationStats._calibrate`).

    >>> seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3))
    >>> [(type(b).__name__, type(a).__name__) for b, a in _chained(seq, [seq[0], seq[1], seq[3]]).items()]
    [('BatchNorm2d', 'Conv2d')]
    """
    hooked = {id(m) for m in mods}
    pairs: dict[nn.Module, nn.Module] = {}
    for parent in model.modules():
        if isinstance(parent, nn.Sequential) and type(parent).forward is nn.Sequential.forward:
            children = list(parent)
            for a, b in zip(children, children[1:]):
                if id(a) in hooked and id(b) in hooked and a is not b:
                    pairs[b] = a
    return pairs


def histograms(sample: torch.Tensor, scratch: bool = False) -> torch.Tensor:
    """``[..., layers, 40]`` counts of ``sample`` (``[..., layers, width]``) in fastai's bins (width 0.25 over
    [0, 10]), all in one count: each value's code is its bin plus ``42 *`` its row. ``scratch=True``: the codes
    are computed in ``sample`` itself (the sample buffer, reset after each flush; no new tensor of its size).
    On a GPU a scatter, not ``bincount``, which would read the largest code on the host (a sync)."""
    *lead, width = sample.shape
    rows = sample.numel() // width
    offsets = torch.arange(1, _CODES * rows, _CODES, device=sample.device, dtype=sample.dtype).view(*lead, 1)
    codes = sample.nan_to_num_(-1.0) if scratch else sample.nan_to_num(-1.0)
    codes = codes.mul_(_BINS / 10).floor_().clamp_(-1, _BINS).add_(offsets)  # floor first: exact in float32
    if sample.device.type == "cpu":  # bincount is the faster count on a CPU, where it cannot make anyone wait
        counts = torch.bincount(codes.int().reshape(-1), minlength=rows * _CODES)
    else:
        codes = codes.long().reshape(-1)
        counts = sample.new_zeros(rows * _CODES).scatter_add_(0, codes, sample.new_ones(1).expand(codes.numel()))
    return counts.view(*lead, _CODES)[..., 1:_BINS + 1].to(sample.dtype)
