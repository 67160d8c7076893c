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
    """Raise ``FileNotFoundError`` naming the images whose mask file is missing.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "a_mask.png").touch()
    >>> check_masks_exist(["a.png", "b.png"], [d / "a_mask.png", d / "b_mask.png"])
    Traceback (most recent call last):
    FileNotFoundError: 1 of 2 mask files do not exist: .../b_mask.png (for image b.png). Check label_func / ...
    """
    missing = [(img, m) for img, m in zip(images, masks) if not Path(m).is_file()]
    if missing:
        examples = "; ".join(f"{m} (for image {img})" for img, m in missing[:3])
        raise FileNotFoundError(f"{len(missing)} of {len(masks)} mask files do not exist: {examples}"
                                f"{' ...' if len(missing) > 3 else ''}. Check label_func / the mask folder names.")


def load_pair(image: Any, mask: str | Path, n_codes: int, void_code: int | None) -> Pair:
    """Decode one image (``uint8 [3, H, W]``) and its mask (``uint8 [H, W]``), checked against each other.

    >>> import tempfile, numpy as np; from PIL import Image
    >>> d = Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (5, 4)).save(d / "img.png"); Image.fromarray(np.eye(4, 5, dtype=np.uint8)).save(d / "mask.png")
    >>> img, mask = load_pair(d / "img.png", d / "mask.png", n_codes=2, void_code=None)
    >>> img.shape, mask.shape, mask.unique().tolist()
    (torch.Size([3, 4, 5]), torch.Size([4, 5]), [0, 1])
    """
    img = image_to_tensor(image)
    if not Path(mask).is_file():
        raise FileNotFoundError(f"mask file {mask} (for image {image}) does not exist; check label_func / the mask folder")
    return img, load_mask(mask, n_codes, void_code, image_hw=tuple(img.shape[-2:]), image_path=image)
