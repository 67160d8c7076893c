"""Small layers that several task models share.

>>> float(sigmoid_range(torch.tensor(0.), 0, 5))
2.5
>>> SigmoidRange(0, 5)(torch.zeros(2)).tolist()
[2.5, 2.5]
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["sigmoid_range", "SigmoidRange"]


def sigmoid_range(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """A sigmoid squeezed into ``(low, high)``: ``sigmoid(x) * (high - low) + low``."""
    return torch.sigmoid(x) * (high - low) + low


class SigmoidRange(nn.Module):
    """`sigmoid_range` as a layer: squashes outputs into ``(low, high)`` (regression with a known range,
    ``y_range=`` of the vision, tabular and collab learners)."""

    def __init__(self, low: float, high: float):
        super().__init__()
        if not low < high:
            raise ValueError(f"y_range must be (low, high) with low < high, got {(low, high)!r}")
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_range(x, self.low, self.high)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"
