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
from .validation import check_int

__all__ = ["set_seed"]


def set_seed(seed: int, reproducible: bool = False, by_rank: bool = False) -> int:
    """Seed every global random generator with ``seed`` (plus this process' rank with ``by_rank=True``) and
    return the seed used: weight initialisation, dropout and the on-device augmentation follow it. The loaders'
    shuffling and their workers' random item transforms have their own generator (``seed=`` of the loaders
    and factories, 42 by default), so they repeat from run to run whatever the global seed.

    ``reproducible=True`` (fastai's argument) also asks for deterministic kernels: cuDNN deterministic and
    without autotuning, and ``torch.use_deterministic_algorithms(True, warn_only=True)`` — slower, and the
    same numbers on the same machine and versions.

    Under torchrun, ``by_rank=True`` gives each rank its own stream — different dropout masks and
    augmentations on each shard of the batch — while the model's initial weights still agree (DDP
    broadcasts rank 0's) and the loaders' shuffling stays in step (it has its own generator).

    >>> set_seed(123)  # returns the seed it used
    123
    >>> a = torch.rand(2); _ = set_seed(123)
    >>> torch.equal(a, torch.rand(2))
    True
    >>> set_seed(123, by_rank=True)  # plus this process' rank under torchrun (0 here)
    123
    """
    check_int("seed", seed, low=0)
    seed = seed + (rank_distrib() if by_rank else 0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # CPU and every CUDA device
    if reproducible:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return seed
