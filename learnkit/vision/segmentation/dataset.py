"""Checking segmentation pairs: every mask file exists (`check_masks_exist`, when the loaders are built) and
`load_pair` (an image and its mask, decoded and checked against each other). The loaders decode pairs lazily
through `DataBlock` with ``(ImageBlock, MaskBlock)``.

>>> check_masks_exist([], [])
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..io import image_to_tensor
from .masks import load_mask

__all__ = ["load_pair", "check_masks_exist"]

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
