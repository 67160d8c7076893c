"""`ImageDataset`: images (decoded once, presized, kept in memory) and their targets.

Building one decodes every image once, in a thread pool, and applies the *deterministic* leading item
transforms (e.g. ``Resize(224)``): the ``uint8`` results are cached in memory when they fit (``cache``), so
an epoch costs no decoding at all. Random item transforms (``RandomResizedCrop`` in training) run on each
access. Files that cannot be read raise `ImageLoadError` naming them, or with ``on_error='skip'`` are
left out (see `decode_all`).

>>> ds = ImageDataset([torch.zeros(3, 8, 8, dtype=torch.uint8)] * 2, torch.tensor([0, 1]))
>>> ds[1][0].shape, int(ds[1][1])
(torch.Size([3, 8, 8]), 1)
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .io import ImageLoadError, image_to_tensor
from .transforms import ItemTransform, apply_item_tfms, is_random

__all__ = ["ImageDataset", "decode_all", "collate_images", "split_tfms", "DEFAULT_CACHE_BYTES"]

#: Images are cached in memory when their estimated total size is below this (2 GiB), for ``cache=None``.
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


def _n_threads() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def decode_all(items: Sequence[Any], tfms: Sequence[Any], on_error: str = "raise",
               keep: bool = True) -> tuple[list[torch.Tensor | None], list[tuple[int, str]]]:
    """Decode every item (path, PIL image, array or tensor) and apply ``tfms`` (deterministic ones).

    Returns ``(images, failures)``: ``images[i]`` is the ``uint8 [3, H, W]`` result (``None`` when
    ``keep=False`` or the item failed) and ``failures`` lists ``(index, reason)``. ``on_error='raise'`` raises
    the first `ImageLoadError` instead (the error names the file).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")

    def one(i: int) -> tuple[torch.Tensor | None, str | None]:
        try:
            img = apply_item_tfms(tfms, image_to_tensor(items[i]), training=False)
            return (img if keep else None), None
        except ImageLoadError as e:
            if on_error == "raise":
                raise
            return None, str(e)

    if len(items) <= 4:
        results = [one(i) for i in range(len(items))]
    else:
        with ThreadPoolExecutor(_n_threads()) as ex:  # decoding releases the GIL
            results = list(ex.map(one, range(len(items))))
    failures = [(i, msg) for i, (_, msg) in enumerate(results) if msg is not None]
    return [img for img, _ in results], failures


def collate_images(batch: Sequence[tuple]) -> tuple:
    """Stack ``(image, *targets)`` items, with a clear error when image sizes differ."""
    cols = list(zip(*batch))
    shapes = {tuple(x.shape) for x in cols[0]}
    if len(shapes) > 1:
        raise RuntimeError(f"images in a batch have different sizes ({', '.join(map(str, sorted(shapes)[:3]))}); "
                           "add an item transform that gives them one size, e.g. item_tfms=Resize(224)")
    return tuple(torch.stack(c) for c in cols)


class ImageDataset(Dataset):
    """Images and targets, one split.

    Args:
        items: file paths (or PIL images / tensors), one per target.
        targets: a tensor with one row per item (class index, or multi-hot floats), or ``None``.
        item_tfms: item transforms (``Resize``...), applied with ``training``.
        training: whether this is the training split (random item transforms active).
        images: already decoded images after the fixed transforms (``split_tfms``), one per item, or
            ``None`` to decode on every access.
    """

    def __init__(self, items: Sequence[Any], targets: torch.Tensor | None = None,
                 item_tfms: Sequence[Any] = (), training: bool = False,
                 images: Sequence[torch.Tensor] | None = None):
        if targets is not None and len(targets) != len(items):
            raise ValueError(f"got {len(items)} items but {len(targets)} targets")
        if images is not None and len(images) != len(items):
            raise ValueError(f"got {len(items)} items but {len(images)} cached images")
        self.items, self.targets, self.training = list(items), targets, training
        self.item_tfms = list(item_tfms)
        self.fixed_tfms, self.random_tfms = split_tfms(self.item_tfms, training)
        self.images = list(images) if images is not None else None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def deterministic(self) -> bool:
        """Whether ``self[i]`` is the same on every access (no random item transforms)."""
        return not self.random_tfms or all(not is_random(t) for t in self.random_tfms)

    def image(self, i: int) -> torch.Tensor:
        """Item ``i``'s image after all item transforms (a fresh random draw for random ones)."""
        if self.images is not None:
            img = self.images[i]
        else:
            img = apply_item_tfms(self.fixed_tfms, image_to_tensor(self.items[i]), training=self.training)
        return apply_item_tfms(self.random_tfms, img, training=self.training) if self.random_tfms else img

    def __getitem__(self, i: int) -> tuple:
        img = self.image(i)
        return (img,) if self.targets is None else (img, self.targets[i])

    def item_name(self, i: int) -> str:
        o = self.items[i]
        return str(o) if isinstance(o, (str, Path)) else f"item {i}"
