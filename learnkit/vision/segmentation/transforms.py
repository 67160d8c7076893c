"""Paired transforms: every geometric change moves the image and its mask together.

Built on torchvision's transforms v2: an image wrapped as ``tv_tensors.Image`` and its mask as
``tv_tensors.Mask`` go through the same transform call, so they get the same random parameters;
torchvision resamples masks with nearest-neighbour and leaves them out of photometric transforms
(colour jitter, normalisation). Any v2 transform works as a segmentation ``batch_tfms``.

Pixels that a geometric transform brings in from outside the image (corners after a rotation) get
the ignore value (the void code, or -100 when there is none), so the loss skips them.

>>> import torch
>>> img, mask = torch.zeros(3, 4, 6, dtype=torch.uint8), torch.zeros(4, 6, dtype=torch.uint8)
>>> [t.shape for t in resize_pair(img, mask, (2, 3))]
[torch.Size([3, 2, 3]), torch.Size([2, 3])]
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

__all__ = ["resize_pair", "apply_paired", "seg_aug_transforms", "as_size"]


def as_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``(height, width)`` from an int (a square) or a pair; ``None`` stays ``None``.

    >>> as_size(64), as_size((96, 128))
    ((64, 64), (96, 128))
    """
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}") from None
    if h < 1 or w < 1 or list(size) != [h, w]:
        raise ValueError(f"size must hold positive integers (height, width), got {size!r}")
    return h, w


def resize_pair(image: torch.Tensor, mask: torch.Tensor, size: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize an image ``[C, H, W]`` (bilinear, antialiased) and its mask ``[H, W]`` (nearest) to ``size``."""
    h, w = as_size(size)
    if tuple(image.shape[-2:]) == (h, w):
        return image, mask
    image = TF.resize(tv_tensors.Image(image), [h, w], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    mask = TF.resize(tv_tensors.Mask(mask), [h, w], interpolation=v2.InterpolationMode.NEAREST_EXACT)
    return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def apply_paired(tfm: Callable, image: torch.Tensor, mask: torch.Tensor, ignore_index: int = -100
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a v2 transform on one ``(image [C, H, W], mask [H, W])`` pair with shared random parameters.

    The mask is shifted by one during the transform so that the transform's fill value (0) marks
    pixels from outside the image; they come back as ``ignore_index``. Returns plain tensors, the mask
    as ``int64``.
    """
    shifted = tv_tensors.Mask(mask.long() + 1)
    img_out, mask_out = tfm(tv_tensors.Image(image), shifted)
    mask_out = mask_out.as_subclass(torch.Tensor) - 1
    mask_out[mask_out < 0] = ignore_index
    return img_out.as_subclass(torch.Tensor), mask_out


def seg_aug_transforms(do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.0,
                       min_zoom: float = 1.0, max_zoom: float = 1.1, max_warp: float = 0.0,
                       max_lighting: float = 0.2, p_affine: float = 0.75, p_lighting: float = 0.75) -> v2.Compose:
    """The usual segmentation augmentations as one v2 transform for (image, mask) pairs.

    Flips, then (with probability ``p_affine``) a rotation of up to ``max_rotate`` degrees and a zoom in
    ``[min_zoom, max_zoom]``, an optional perspective warp of strength ``max_warp``, then (with
    probability ``p_lighting``) brightness and contrast changes of up to ``max_lighting`` (image only).
    The image must be float in [0, 1] or uint8.

    >>> len(seg_aug_transforms().transforms)
    3
    """
    for name, v in {"max_rotate": max_rotate, "max_warp": max_warp, "max_lighting": max_lighting}.items():
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    for name, v in {"p_affine": p_affine, "p_lighting": p_lighting}.items():
        if not 0 <= v <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
    if not 0 < min_zoom <= max_zoom:
        raise ValueError(f"zoom range must satisfy 0 < min_zoom <= max_zoom, got {min_zoom}, {max_zoom}")
    tfms: list[Callable] = []
    if do_flip:
        tfms.append(v2.RandomHorizontalFlip())
    if flip_vert:
        tfms.append(v2.RandomVerticalFlip())
    geo: list[Callable] = []
    if max_rotate > 0 or (min_zoom, max_zoom) != (1.0, 1.0):
        geo.append(v2.RandomAffine(degrees=max_rotate, scale=(min_zoom, max_zoom),
                                   interpolation=v2.InterpolationMode.BILINEAR))
    if max_warp > 0:
        geo.append(v2.RandomPerspective(distortion_scale=max_warp, p=1.0))
    if geo and p_affine > 0:
        tfms.append(v2.RandomApply(geo, p=p_affine))
    if max_lighting > 0 and p_lighting > 0:
        tfms.append(v2.RandomApply([v2.ColorJitter(brightness=max_lighting, contrast=max_lighting)], p=p_lighting))
    return v2.Compose(tfms)
