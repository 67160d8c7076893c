"""Paired batch transforms: every geometric change moves the images and their masks together.

learnkit's own vision transforms (`Resize`, `RandomResizedCrop`, `aug_transforms()`, `Normalize` from
`learnkit.vision.transforms`) already take a mask and resample it with nearest neighbour; they are
used as they are. This module adds torchvision **v2** transforms as segmentation batch transforms: each
item of the batch goes through the v2 transform as a ``tv_tensors.Image`` with its mask as a
``tv_tensors.Mask``, so image and mask share the random draw, the mask is resampled with nearest
neighbour and photometric transforms leave it alone.

Pixels that a v2 geometric transform brings in from outside the image (the corners of a rotation)
get ``ignore_index`` (the void code, or -100), so the loss skips them.

>>> import torch
>>> from torchvision.transforms import v2
>>> img, mask = torch.rand(3, 4, 6), torch.arange(24).reshape(4, 6) % 3
>>> out_img, out_mask = apply_paired(v2.RandomHorizontalFlip(p=1.0), img, mask)
>>> torch.equal(out_mask, mask.flip(-1)), torch.equal(out_img, img.flip(-1))
(True, True)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..transforms import apply_batch_tfms, is_random

__all__ = ["apply_paired", "apply_seg_batch_tfms", "is_random_tfm"]


def apply_paired(tfm: Callable, image: torch.Tensor, mask: torch.Tensor, ignore_index: int = -100
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a v2 transform on one ``(image [C, H, W], mask [H, W])`` pair with one shared random draw.

    The mask is shifted by one during the transform so that the transform's fill value (0, the v2
    default) marks pixels from outside the image; they come back as ``ignore_index``. Returns plain
    tensors, the mask as ``int64``.

    >>> img, mask = torch.rand(3, 2, 2), torch.zeros(2, 2, dtype=torch.long)
    >>> out_img, out_mask = apply_paired(v2.Pad(1), img, mask, ignore_index=255)
    >>> out_img.shape, out_mask.tolist()          # the padding is ignore_index, not class 0
    (torch.Size([3, 4, 4]), [[255, 255, 255, 255], [255, 0, 0, 255], [255, 0, 0, 255], [255, 255, 255, 255]])
    """
    shifted = tv_tensors.Mask(mask.long() + 1)
    img_out, mask_out = tfm(tv_tensors.Image(image), shifted)
    mask_out = mask_out.as_subclass(torch.Tensor) - 1
    mask_out[mask_out < 0] = ignore_index
    return img_out.as_subclass(torch.Tensor), mask_out


def _is_v2(t: Any) -> bool:
    return isinstance(t, v2.Transform)


def apply_seg_batch_tfms(tfms: Sequence[Any], images: torch.Tensor, masks: torch.Tensor | None,
                         training: bool, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply batch transforms to float images ``[B, 3, H, W]`` and ``int64`` masks ``[B, H, W]`` (or ``None``).

    learnkit batch transforms get the whole batch (random ones only when ``training``); a torchvision v2
    transform is treated as random and runs per item, in training only, through `apply_paired`.

    >>> images, masks = torch.rand(2, 3, 4, 4), torch.arange(16).reshape(1, 4, 4).expand(2, 4, 4) % 3
    >>> norm = Normalize(*imagenet_stats)
    >>> x, y = apply_seg_batch_tfms([v2.RandomHorizontalFlip(p=1.0), norm], images, masks, training=True)
    >>> torch.equal(y, masks.flip(-1)), torch.allclose(x, norm(images.flip(-1)))
    (True, True)
    >>> x, y = apply_seg_batch_tfms([v2.RandomHorizontalFlip(p=1.0), norm], images, masks, training=False)
    >>> torch.equal(y, masks), torch.allclose(x, norm(images))     # validation: the v2 flip is skipped
    (True, True)
    """
    i = 0
    tfms = list(tfms)
    while i < len(tfms):
        if _is_v2(tfms[i]):
            if training:
                if masks is None:
                    images = torch.stack([tfms[i](tv_tensors.Image(x)).as_subclass(torch.Tensor) for x in images])
                else:
                    pairs = [apply_paired(tfms[i], x, m, ignore_index) for x, m in zip(images, masks)]
                    images, masks = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            i += 1
            continue
        j = i
        while j < len(tfms) and not _is_v2(tfms[j]):
            j += 1
        out = apply_batch_tfms(tfms[i:j], images, masks, training=training)
        images, masks = (out if masks is not None else (out, None))
        i = j
    return images, masks


def is_random_tfm(t: Any) -> bool:
    """Whether a segmentation batch transform is random (v2 transforms always count as random)."""
    return _is_v2(t) or is_random(t)
