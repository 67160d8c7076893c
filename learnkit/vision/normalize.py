"""`Normalize`: the batch transform that standardises images per channel (and undoes it for display).

>>> n = Normalize(*imagenet_stats)
>>> [round(float(v), 3) for v in n(torch.ones(1, 3, 2, 2))[0, :, 0, 0]]   # white, in ImageNet's units
[2.249, 2.429, 2.64]
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..core.registry import register_transform
from .augment import BatchTransform, imagenet_stats  # noqa: F401 (imagenet_stats: the doctest)
from .warp import _pack

__all__ = ["Normalize"]


@register_transform
class Normalize(BatchTransform):
    """``(x - mean) / std`` per channel on ``[0, 1]`` float images; ``decode`` undoes it (for display).

    ``Normalize()`` without statistics takes them from the data: the loaders give it the per-channel mean
    and std of their first training batch (fastai's), or, used alone, it takes those of the first batch it sees.

    >>> n = Normalize.from_stats(*imagenet_stats)
    >>> x = torch.rand(2, 3, 4, 4)
    >>> torch.allclose(n.decode(n(x)), x, atol=1e-6)
    True
    >>> n = Normalize(); y = n(torch.rand(8, 1, 4, 4) * 0.5)   # statistics from this batch: then fixed
    >>> len(n.mean), abs(round(float(y.mean()), 4)), round(float(y.std()), 2)
    (1, 0.0, 1.0)
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither (Normalize(): statistics from a batch)")
        if mean is None:
            self.mean = self.std = None
            return
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std need one value per channel and std > 0; got {mean}, {std}")

    @classmethod
    def from_stats(cls, mean: Sequence[float], std: Sequence[float]) -> "Normalize":
        return cls(mean, std)

    def setup(self, images: torch.Tensor) -> "Normalize":
        """Take the per-channel mean and std of ``images`` (``[B, C, H, W]`` floats in ``[0, 1]``)."""
        x = images.detach().float().transpose(0, 1).reshape(images.shape[1], -1)
        self.mean = tuple(float(v) for v in x.mean(1))
        self.std = tuple(max(float(v), 1e-6) for v in x.std(1))
        return self

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean is None:
            raise ValueError("this Normalize() has no statistics yet: it takes them from the first batch it "
                             "normalises (or from the training data when the loaders are built)")
        shape = (1, -1, 1, 1) if x.ndim == 4 else (-1, 1, 1)
        return (torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(shape),
                torch.tensor(self.std, device=x.device, dtype=x.dtype).view(shape))

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None, *,
                 points: torch.Tensor | None = None) -> Any:
        if self.mean is None:
            self.setup(images)
        mean, std = self._stats(images)
        return _pack((images - mean) / std, masks, points)

    def decode(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(images)
        return images * std + mean

    def export_config(self) -> dict:
        if self.mean is None:
            raise ValueError("a Normalize() without statistics cannot be exported: build the loaders (they set "
                             "them from a training batch) or pass mean and std")
        return {"type": "Normalize", "mean": list(self.mean), "std": list(self.std)}

    def __repr__(self) -> str:
        return "Normalize()" if self.mean is None else f"Normalize(mean={self.mean}, std={self.std})"
