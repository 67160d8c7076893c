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
    """A sigmoid squeezed into ``(low, high)``: ``sigmoid(x) * (high - low) + low``.

    >>> sigmoid_range(torch.tensor([-10.0, 0.0, 10.0]), 0.5, 5.5).round(decimals=2)  # e.g. ratings from 0.5 to 5.5
    tensor([0.5000, 3.0000, 5.5000])
    """
    return torch.sigmoid(x) * (high - low) + low


class SigmoidRange(nn.Module):
    """`sigmoid_range` as a layer: squashes outputs into ``(low, high)`` (regression with a known range,
    ``y_range=`` of the vision, tabular and collab learners).

    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 1), SigmoidRange(0.5, 5.5))  # outputs inside (0.5, 5.5)
    >>> model[1]
    SigmoidRange(low=0.5, high=5.5)
    >>> out = model(torch.randn(16, 3))
    >>> out.shape, bool((out >= 0.5).all() and (out <= 5.5).all())
    (torch.Size([16, 1]), True)
    """

    def __init__(self, low: float, high: float):
        super().__init__()
        if not low < high:
            raise ValueError(f"y_range must be (low, high) with low < high, got {(low, high)!r}")
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_range(x, self.low, self.high)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"
