"""`TensorLoader` for ratings: the one tensor loader of `learnkit.core.tensorloader`, under its old import path.

>>> import torch
>>> x, y = torch.tensor([[0, 1], [1, 0], [1, 1]]), torch.tensor([4.0, 3.5, 5.0])
>>> [b[1].tolist() for b in TensorLoader(x, y, bs=2)]
[[4.0, 3.5], [5.0]]
"""
from __future__ import annotations

from ..core.tensorloader import TensorLoader

__all__ = ["TensorLoader"]
