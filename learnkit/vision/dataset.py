"""Helpers the segmentation loaders share: `split_tfms` (the cacheable leading item transforms) and
`collate_images`. Image classification loads through `DataBlock` (lazy decoding in the loader workers).

>>> collate_images([(torch.zeros(3, 2, 2), torch.tensor(0))] * 2)[0].shape
torch.Size([2, 3, 2, 2])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .transforms import ItemTransform

__all__ = ["collate_images", "split_tfms", "DEFAULT_CACHE_BYTES"]

#: Segmentation keeps decoded images in memory when their estimated total size is below this (2 GiB).
DEFAULT_CACHE_BYTES = 2 * 1024**3


def split_tfms(tfms: Sequence[Any], training: bool) -> tuple[list[Any], list[Any]]:
    """``(fixed, per_access)``: the leading transforms whose output never changes (cacheable), and the rest.

    In validation (``training=False``) learnkit's item transforms are all deterministic; plain callables
    are assumed random.
    """
    tfms = list(tfms)
    for i, t in enumerate(tfms):
        fixed = isinstance(t, ItemTransform) and (not training or not t.random)
        if not fixed:
            return tfms[:i], tfms[i:]
    return tfms, []


def collate_images(batch: Sequence[tuple]) -> tuple:
    """Stack ``(image, *targets)`` items, with a clear error when image sizes differ."""
    cols = list(zip(*batch))
    shapes = {tuple(x.shape) for x in cols[0]}
    if len(shapes) > 1:
        raise RuntimeError(f"images in a batch have different sizes ({', '.join(map(str, sorted(shapes)[:3]))}); "
                           "add an item transform that gives them one size, e.g. item_tfms=Resize(224)")
    return tuple(torch.stack(c) for c in cols)
