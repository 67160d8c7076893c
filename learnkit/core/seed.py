"""`set_seed`: one call seeds torch (CPU and CUDA), numpy and Python's ``random``, optionally per rank.

>>> set_seed(42)
42
>>> a = torch.rand(1); _ = set_seed(42); bool(torch.equal(a, torch.rand(1)))
True
"""
from __future__ import annotations

import random

import numpy as np
import torch

from .process_group import rank_distrib

__all__ = ["set_seed"]


def set_seed(seed: int, by_rank: bool = False) -> int:
    """Seed every global random generator with ``seed`` (plus this process' rank with ``by_rank=True``) and
    return the seed used.

    Under torchrun, ``by_rank=True`` gives each rank its own stream — different dropout masks and
    augmentations on each shard of the batch — while the model's initial weights still agree (DDP
    broadcasts rank 0's) and the loaders' shuffling stays in step (it has its own generator).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = seed + (rank_distrib() if by_rank else 0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # CPU and every CUDA device
    return seed
