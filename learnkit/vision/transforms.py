"""Image transforms: item transforms on the CPU, batch transforms on the device.

*Item transforms* (`Resize`, `RandomResizedCrop`) run on each decoded ``uint8 [3, H, W]`` image, before
collation, through torchvision transforms v2. *Batch transforms* (`aug_transforms()`: `GeometricAug`,
`LightingAug`; `BatchResize`, `Normalize`; defined in `learnkit.vision.augment` and re-exported here) run
on a whole float batch ``[B, 3, H, W]`` (pixels in ``[0, 1]``) on the device, each item with its own random
draw. Random transforms only run while training (``training=True``); validation and inference see the
deterministic ones (and the validation version of presizing, a centre crop).

Every transform also takes a segmentation mask (``[H, W]`` item, ``[B, H, W]`` batch; class indices)
and moves it with the image: nearest-neighbour resampling, lighting untouched. Called with a mask, a
transform returns ``(image, mask)``; without one, just the image.

Every transform also takes key points, keyword ``points=`` (``[N, 2]`` item, ``[B, N, 2]`` batch), in pixel
coordinates ``(x, y)`` with pixel centres at integers: a point on ``image[:, r, c]`` is ``(c, r)``. They
move exactly as the image does (points that leave the image keep their outside coordinates, as in
fastai). The result then has the points last: ``(image, points)`` or ``(image, mask, points)``.

>>> img = torch.zeros(3, 100, 150, dtype=torch.uint8)
>>> Resize(64)(img).shape, Resize(64, method="pad")(img).shape
(torch.Size([3, 64, 64]), torch.Size([3, 64, 64]))
>>> out, pts = Resize(50, method="squish")(img, points=torch.tensor([[74.5, 49.5], [0.0, 0.0]]))
>>> pts  # the image centre stays the centre; the top-left pixel is averaged into output pixel (0, 0)
tensor([[24.5000, 24.5000],
        [-0.3333, -0.2500]])
>>> x = torch.rand(4, 3, 32, 32)
>>> [t(x).shape for t in aug_transforms()] == [x.shape] * 2
True
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..core.registry import TRANSFORM_REGISTRY, register_transform
from .augment import (BatchResize, BatchTransform, GeometricAug, LightingAug, _pack, _size2, apply_batch_tfms,
                      aug_transforms, imagenet_stats, is_random, validation_tfms)
from .normalize import Normalize

__all__ = ["ItemTransform", "Resize", "RandomResizedCrop", "BatchTransform", "GeometricAug", "BatchResize",
           "LightingAug", "Normalize", "aug_transforms", "imagenet_stats", "apply_item_tfms", "apply_batch_tfms",
           "is_random", "validation_tfms", "transform_from_config", "transform_config", "register_transform",
           "tfms_to_config", "tfms_from_config"]

_INTERP = {"nearest": v2.InterpolationMode.NEAREST, "bilinear": v2.InterpolationMode.BILINEAR,
           "bicubic": v2.InterpolationMode.BICUBIC}
_PAD_MODES = ("zeros", "reflection", "border")


def _interp(name: str) -> v2.InterpolationMode:
    if name not in _INTERP:
        raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {name!r}")
    return _INTERP[name]


def _wrap(image: torch.Tensor, mask: torch.Tensor | None, points: torch.Tensor | None = None) -> tuple:
    out: tuple = (tv_tensors.Image(image),)
    if mask is not None:
        out += (tv_tensors.Mask(mask),)
    if points is not None:
        out += (tv_tensors.KeyPoints(points, canvas_size=tuple(image.shape[-2:])),)
    return out


def _each(fn: Any, out: tuple, *args: Any, **kwargs: Any) -> tuple:
    """Apply a torchvision functional op to the image and the mask (it dispatches on their type)."""
    return tuple(fn(o, *args, **kwargs) for o in out)


def _unwrap(out: Any) -> Any:
    """Plain tensors from a torchvision output: one tensor, or a tuple of them."""
    if isinstance(out, tuple):
        return tuple(o.as_subclass(torch.Tensor) for o in out) if len(out) > 1 else out[0].as_subclass(torch.Tensor)
    return out.as_subclass(torch.Tensor)


def _finish(out: tuple, points: torch.Tensor | None) -> Any:
    """Pack a wrapped ``(image[, mask])`` and the moved points as the caller expects."""
    plain = _unwrap(out)
    image, mask = plain if isinstance(plain, tuple) else (plain, None)
    return _pack(image, mask, points)


def _split(out: Any, has_mask: bool, has_points: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(image, mask or None, points or None)`` from what a transform returned."""
    if not has_mask and not has_points:
        return out, None, None
    if has_mask and has_points:
        return out
    return (out[0], out[1], None) if has_mask else (out[0], None, out[1])


def _check_points(points: torch.Tensor | None) -> torch.Tensor | None:
    if points is None:
        return None
    if points.ndim != 2 or points.shape[-1] != 2:
        raise ValueError(f"points must be [N, 2] (x, y) pixel coordinates, got shape {tuple(points.shape)}")
    return points if points.is_floating_point() else points.float()


def _resize_points(points: torch.Tensor, in_hw: Sequence[int], out_hw: Sequence[int]) -> torch.Tensor:
    """Points under torchvision's resize (pixel areas scale: ``x' = (x + 0.5) * w' / w - 0.5``)."""
    scale = torch.tensor([out_hw[1] / in_hw[1], out_hw[0] / in_hw[0]], dtype=points.dtype, device=points.device)
    return (points + 0.5) * scale - 0.5


def _shift_points(points: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    return points + torch.tensor([dx, dy], dtype=points.dtype, device=points.device)


def _center_crop(out: tuple, points: torch.Tensor | None, size: Sequence[int]) -> tuple[tuple, torch.Tensor | None]:
    h, w = out[0].shape[-2:]
    if points is not None:  # TF.center_crop's offsets
        points = _shift_points(points, -int(round((w - size[1]) / 2.0)), -int(round((h - size[0]) / 2.0)))
    return _each(TF.center_crop, out, list(size)), points


def _pad(out: tuple, pad: list[int], pad_mode: str) -> tuple:
    """Pad ``[left, top, right, bottom]``. Reflection pads in rounds of at most ``side - 1`` (torch's limit),
    which reflects the reflection; a side of 1 pixel has nothing to reflect and repeats its border."""
    if pad_mode != "reflection":
        return _each(TF.pad, out, pad, padding_mode="constant" if pad_mode == "zeros" else "edge")
    left, top, right, bottom = pad
    while left or top or right or bottom:
        h, w = out[0].shape[-2:]
        if (w == 1 and (left or right)) or (h == 1 and (top or bottom)):
            return _each(TF.pad, out, [left, top, right, bottom], padding_mode="edge")
        step = [min(left, w - 1), min(top, h - 1), min(right, w - 1), min(bottom, h - 1)]
        out = _each(TF.pad, out, step, padding_mode="reflect")
        left, top, right, bottom = (a - b for a, b in zip((left, top, right, bottom), step))
    return out


# --- item transforms ----------------------------------------------------------------------------------

class ItemTransform:
    """Base of item transforms: ``tfm(image, mask=None, training=True, *, points=None)``; returns ``image``,
    or the tuple ``(image[, mask][, points])`` of what it got.

    ``random`` says whether the output differs between calls in training (then it is not cached and is
    replaced by its deterministic ``training=False`` version for validation and inference).

    >>> class HFlip(ItemTransform):                   # deterministic: its output can be cached
    ...     def __call__(self, image, mask=None, training=True, *, points=None):
    ...         return image.flip(-1) if mask is None else (image.flip(-1), mask.flip(-1))
    >>> HFlip()(torch.arange(3).view(1, 1, 3)).tolist(), HFlip().random
    ([[[2, 1, 0]]], False)
    """

    random: bool = False

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None, training: bool = True, *,
                 points: torch.Tensor | None = None) -> Any:
        raise NotImplementedError

    def export_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} cannot be exported")


@register_transform
class Resize(ItemTransform):
    """Resize every image to ``size`` (an int for a square, or ``(height, width)``), the same way in training
    and validation.

    ``method``: ``'crop'`` scales the image to cover ``size`` then takes the centre; ``'squish'`` scales each
    side to ``size`` (aspect ratio changes); ``'pad'`` scales the image to fit inside ``size`` and pads
    (``pad_mode`` ``'zeros'``, ``'reflection'`` or ``'border'``, which repeats the edge pixels). Antialiased;
    ``interpolation`` ``'bicubic'``, ``'bilinear'`` or ``'nearest'``; masks use nearest neighbour.

    >>> img = torch.zeros(3, 20, 40, dtype=torch.uint8)
    >>> [tuple(Resize((10, 15), m, pad_mode="border")(img).shape) for m in ("crop", "pad", "squish")]
    [(3, 10, 15), (3, 10, 15), (3, 10, 15)]
    """

    def __init__(self, size: int | Sequence[int], method: str = "crop", interpolation: str = "bicubic",
                 pad_mode: str = "zeros"):
        self.size = _size2(size)
        if method not in ("crop", "squish", "pad"):
            raise ValueError(f"method must be 'crop', 'squish' or 'pad', got {method!r}")
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"pad_mode must be 'zeros', 'reflection' or 'border', got {pad_mode!r}")
        self.method, self.interpolation, self.pad_mode = method, interpolation, pad_mode
        self._mode = _interp(interpolation)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None, training: bool = True, *,
                 points: torch.Tensor | None = None) -> Any:
        out, points = _wrap(image, mask), _check_points(points)
        h, w = image.shape[-2:]
        th, tw = self.size
        if self.method == "squish":
            nh, nw = th, tw
        elif self.method == "crop":
            s = max(th / h, tw / w)
            nh, nw = max(th, round(h * s)), max(tw, round(w * s))
        else:
            s = min(th / h, tw / w)
            nh, nw = min(th, max(1, round(h * s))), min(tw, max(1, round(w * s)))
        if (nh, nw) != (h, w):
            out = _each(TF.resize, out, [nh, nw], interpolation=self._mode, antialias=True)
            points = None if points is None else _resize_points(points, (h, w), (nh, nw))
        if self.method == "crop":
            out, points = _center_crop(out, points, (th, tw))
        elif self.method == "pad":
            top, left = (th - nh) // 2, (tw - nw) // 2
            pad = [left, top, tw - nw - left, th - nh - top]
            if any(pad):
                out = _pad(out, pad, self.pad_mode)
                points = None if points is None else _shift_points(points, left, top)
        return _finish(out, points)

    def export_config(self) -> dict:
        return {"type": "Resize", "size": list(self.size), "method": self.method,
                "interpolation": self.interpolation, "pad_mode": self.pad_mode}

    def __repr__(self) -> str:
        return (f"Resize(size={self.size}, method={self.method!r}, interpolation={self.interpolation!r}, "
                f"pad_mode={self.pad_mode!r})")


@register_transform
class RandomResizedCrop(ItemTransform):
    """Training: crop a random area (``min_scale``..1 of the image, aspect ratio in ``ratio``) and resize it to
    ``size`` (torchvision's ``RandomResizedCrop``). Validation: scale the short side to ``size * (1 + val_xtra)``
    and take the centre.

    >>> img = torch.zeros(3, 50, 80, dtype=torch.uint8)
    >>> out, pts = RandomResizedCrop(32, min_scale=0.5)(img, points=torch.tensor([[39.5, 24.5]]), training=False)
    >>> out.shape, pts  # validation: the centre stays the centre
    (torch.Size([3, 32, 32]), tensor([[15.5000, 15.5000]]))
    """

    random = True

    def __init__(self, size: int | Sequence[int], min_scale: float = 0.08,
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), interpolation: str = "bicubic", val_xtra: float = 0.14):
        self.size = _size2(size)
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be a (low, high) pair with 0 < low <= high, got {ratio!r}")
        if val_xtra < 0:
            raise ValueError(f"val_xtra must be >= 0, got {val_xtra}")
        self.min_scale, self.ratio, self.interpolation, self.val_xtra = min_scale, tuple(ratio), interpolation, val_xtra
        self._rrc = v2.RandomResizedCrop(self.size, scale=(min_scale, 1.0), ratio=self.ratio,
                                         interpolation=_interp(interpolation), antialias=True)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None, training: bool = True, *,
                 points: torch.Tensor | None = None) -> Any:
        points = _check_points(points)
        if training:
            out = _wrap(image, mask)
            p = self._rrc.make_params(list(out))  # the draw v2.RandomResizedCrop makes, applied by hand
            out = _each(TF.resized_crop, out, p["top"], p["left"], p["height"], p["width"], list(self.size),
                        interpolation=self._rrc.interpolation, antialias=True)
            if points is not None:
                points = _resize_points(_shift_points(points, -p["left"], -p["top"]), (p["height"], p["width"]),
                                        self.size)
        else:
            th, tw = self.size
            big = (round(th * (1 + self.val_xtra)), round(tw * (1 + self.val_xtra)))
            resized = Resize(big, "crop", self.interpolation)(image, mask, points=points)
            image2, mask2, points = _split(resized, mask is not None, points is not None)
            out, points = _center_crop(_wrap(image2, mask2), points, self.size)
        return _finish(out, points)

    def export_config(self) -> dict:
        return {"type": "RandomResizedCrop", "size": list(self.size), "min_scale": self.min_scale,
                "ratio": list(self.ratio), "interpolation": self.interpolation, "val_xtra": self.val_xtra}

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, min_scale={self.min_scale})"


def apply_item_tfms(tfms: Sequence[Any], image: torch.Tensor, mask: torch.Tensor | None = None,
                    training: bool = True, points: torch.Tensor | None = None) -> Any:
    """Apply item transforms in order; returns ``image``, or the tuple ``(image[, mask][, points])`` of what
    was passed. Plain callables (e.g. a torchvision v2 transform) get ``image`` (or ``(image, mask)``, plus
    ``tv_tensors.KeyPoints`` with points - moved by torchvision's own key-point rules) and run in training
    and validation alike."""
    points = _check_points(points)
    has_mask, has_points = mask is not None, points is not None
    for t in tfms:
        if isinstance(t, ItemTransform):
            out = t(image, mask, training=training, points=points) if has_points else t(image, mask, training=training)
        else:
            out = _unwrap(t(*_wrap(image, mask, points)))
        image, mask, points = _split(out, has_mask, has_points)
    return _pack(image, mask, points)


def transform_config(tfm: Any) -> dict:
    """The JSON config of a transform (``{"type": name, **tfm.export_config()}``), what an export stores.
    Fails, naming ``@register_transform``, for a transform whose class is not registered (it could be
    exported but never loaded).

    >>> transform_config(Normalize((0.5,), (0.25,)))
    {'type': 'Normalize', 'mean': [0.5], 'std': [0.25]}
    """
    return TRANSFORM_REGISTRY.to_config(tfm)


def transform_from_config(config: dict) -> ItemTransform | BatchTransform:
    """Rebuild a transform from its `transform_config` (used by `load_learner`): the class registered under
    ``config["type"]`` (``@register_transform``), built from the other keys; options missing from an older
    config take their defaults.

    >>> transform_from_config(Resize(32, pad_mode="border").export_config())
    Resize(size=(32, 32), method='crop', interpolation='bicubic', pad_mode='border')
    >>> transform_from_config(BatchResize(24, mode="bicubic").export_config())
    BatchResize(size=(24, 24), mode='bicubic', pad_mode='reflection', align_corners=True)
    """
    return TRANSFORM_REGISTRY.from_config(config)


def tfms_to_config(item_tfms: Sequence[Any], batch_tfms: Sequence[Any], normalize: Any = None) -> dict:
    """The transforms of an image pipeline as an export stores them: the item transforms, the batch
    transforms that run outside training (`validation_tfms`: presizing becomes `BatchResize`), and the
    normalisation. Every class must be registered (``@register_transform``).

    >>> cfg = tfms_to_config([Resize(8)], aug_transforms(size=6), Normalize((0.5,), (0.5,)))
    >>> [c["type"] for c in cfg["item_tfms"] + cfg["batch_tfms"]], tfms_from_config(cfg)["normalize"]
    (['Resize', 'BatchResize'], Normalize(mean=(0.5,), std=(0.5,)))
    """
    return {"item_tfms": [transform_config(t) for t in item_tfms],
            "batch_tfms": [transform_config(t) for t in validation_tfms(batch_tfms)],
            "normalize": transform_config(normalize) if normalize is not None else None}


def tfms_from_config(config: dict) -> dict[str, Any]:
    """``item_tfms``, ``batch_tfms`` and ``normalize`` rebuilt from `tfms_to_config` (missing keys: none)."""
    norm = config.get("normalize")
    return {"item_tfms": [transform_from_config(c) for c in config.get("item_tfms", [])],
            "batch_tfms": [transform_from_config(c) for c in config.get("batch_tfms", [])],
            "normalize": transform_from_config(norm) if norm else None}
