"""`SegmentationDataset`: images and their masks, decoded once, checked, presized and kept in memory.

`decode_pairs` reads every (image, mask) pair once, in a thread pool: the mask must exist, have its
image's size and hold only values of the codes (or the void code); errors name both files. The
deterministic leading item transforms (e.g. ``Resize``) are applied to image and mask together and
the ``uint8`` results are cached, so an epoch decodes nothing. Random item transforms run per access.

>>> import torch
>>> pairs = [(torch.zeros(3, 4, 4, dtype=torch.uint8), torch.ones(4, 4, dtype=torch.uint8))]
>>> ds = SegmentationDataset(["a.png"], ["a_mask.png"], n_codes=2, pairs=pairs)
>>> [t.shape for t in ds[0]]
[torch.Size([3, 4, 4]), torch.Size([4, 4])]
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..dataset import DEFAULT_CACHE_BYTES, split_tfms
from ..io import image_to_tensor
from ..transforms import apply_item_tfms
from .masks import load_mask

__all__ = ["SegmentationDataset", "load_pair", "decode_pairs", "check_masks_exist"]

Pair = tuple[torch.Tensor, torch.Tensor]


def check_masks_exist(images: Sequence[Any], masks: Sequence[str | Path]) -> None:
    """Raise ``FileNotFoundError`` naming the images whose mask file is missing."""
    missing = [(img, m) for img, m in zip(images, masks) if not Path(m).is_file()]
    if missing:
        examples = "; ".join(f"{m} (for image {img})" for img, m in missing[:3])
        raise FileNotFoundError(f"{len(missing)} of {len(masks)} mask files do not exist: {examples}"
                                f"{' ...' if len(missing) > 3 else ''}. Check label_func / the mask folder names.")


def load_pair(image: Any, mask: str | Path, n_codes: int, void_code: int | None) -> Pair:
    """Decode one image (``uint8 [3, H, W]``) and its mask (``uint8 [H, W]``), checked against each other."""
    img = image_to_tensor(image)
    if not Path(mask).is_file():
        raise FileNotFoundError(f"mask file {mask} (for image {image}) does not exist; check label_func / the mask folder")
    return img, load_mask(mask, n_codes, void_code, image_hw=tuple(img.shape[-2:]), image_path=image)


def _n_threads() -> int:
    import os
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def decode_pairs(images: Sequence[Any], masks: Sequence[str | Path], n_codes: int, void_code: int | None,
                 tfms: Sequence[Any] = (), keep: bool = True) -> list[Pair | None]:
    """Decode and check every pair and apply the (deterministic) item transforms ``tfms`` to both.

    Returns the pairs (``None`` entries when ``keep=False``: decoded only to check them). The first bad
    pair raises an error naming its files.
    """
    def one(i: int) -> Pair | None:
        img, mask = load_pair(images[i], masks[i], n_codes, void_code)
        img, mask = apply_item_tfms(tfms, img, mask, training=False) if tfms else (img, mask)
        return (img, mask) if keep else None

    if len(images) <= 4:
        return [one(i) for i in range(len(images))]
    with ThreadPoolExecutor(_n_threads()) as ex:  # PNG decoding releases the GIL
        return list(ex.map(one, range(len(images))))


def want_cache(cache: bool | None, n_items: int, first: Pair | None) -> bool:
    """Keep the decoded pairs in memory? ``None``: when the first pair's size times their count is <= 2 GiB."""
    if cache is not None:
        return bool(cache)
    if first is None:
        return True
    return (first[0].numel() + first[1].numel()) * n_items <= DEFAULT_CACHE_BYTES


class SegmentationDataset(Dataset):
    """(image, mask) pairs of one split, or images alone (``masks=None``) for inference.

    Args:
        images: image files (or PIL images / arrays / tensors).
        masks: mask files, one per image, or ``None``.
        n_codes, void_code: the mask values allowed (``0..n_codes-1`` and the void code).
        item_tfms: item transforms applied to image and mask together (``training`` picks random or not).
        training: whether this is the training split.
        pairs: pairs already decoded with the fixed leading transforms (`decode_pairs`), or ``None`` to
            decode on each access.
    """

    def __init__(self, images: Sequence[Any], masks: Sequence[str | Path] | None, n_codes: int,
                 void_code: int | None = None, item_tfms: Sequence[Any] = (), training: bool = False,
                 pairs: Sequence[Pair] | None = None):
        if masks is not None and len(masks) != len(images):
            raise ValueError(f"got {len(images)} images but {len(masks)} masks")
        if pairs is not None and len(pairs) != len(images):
            raise ValueError(f"got {len(images)} images but {len(pairs)} decoded pairs")
        self.images, self.masks = list(images), (list(masks) if masks is not None else None)
        self.n_codes, self.void_code, self.training = n_codes, void_code, training
        self.item_tfms = list(item_tfms)
        self.fixed_tfms, self.random_tfms = split_tfms(self.item_tfms, training)
        self.pairs = list(pairs) if pairs is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple:
        if self.masks is None:
            img = apply_item_tfms(self.item_tfms, image_to_tensor(self.images[i]), training=self.training)
            return (img,)
        if self.pairs is not None:
            img, mask = self.pairs[i]
        else:
            img, mask = load_pair(self.images[i], self.masks[i], self.n_codes, self.void_code)
            img, mask = apply_item_tfms(self.fixed_tfms, img, mask, training=self.training)
        if self.random_tfms:
            img, mask = apply_item_tfms(self.random_tfms, img, mask, training=self.training)
        return img, mask

    def item_name(self, i: int) -> str:
        o = self.images[i]
        return str(o) if isinstance(o, (str, Path)) else f"item {i}"
