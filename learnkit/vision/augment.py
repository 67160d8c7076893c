"""Batch transforms on the device: fused geometric augmentation with presizing, lighting, normalisation.

A batch transform gets a float batch ``images [B, C, H, W]`` (pixels in ``[0, 1]``, `Normalize` excepted)
and optionally ``masks [B, H, W]`` (class indices) and ``points [B, N, 2]`` (key points), and returns the
same structure it got: ``images``, ``(images, masks)``, ``(images, points)`` or ``(images, masks, points)``.

**Key points** are pixel coordinates ``(x, y)``: ``(0, 0)`` is the centre of the top-left pixel and
``(W - 1, H - 1)`` the centre of the bottom-right one (so a point on pixel ``image[:, r, c]`` is
``(c, r)``). They move exactly as the image content does; a point that leaves the image keeps its
outside coordinates (as in fastai), so drop or mask such points yourself if your loss needs it.

`GeometricAug` draws, per item, a flip, rotation, zoom and perspective warp and - given ``size`` - a random
crop (presizing), and composes them into *one* sampling grid: each image is interpolated once, straight
to the output size. Outside training it is replaced by its `for_validation()` transform: nothing (plain
augmentation) or `BatchResize`, a deterministic centre crop resized to ``size``.

>>> x = torch.rand(2, 3, 60, 80)
>>> tfms = aug_transforms(size=32, min_scale=0.5)
>>> apply_batch_tfms(tfms, x).shape, apply_batch_tfms(tfms, x, training=False).shape
(torch.Size([2, 3, 32, 32]), torch.Size([2, 3, 32, 32]))
>>> pts = torch.tensor([[[10.0, 20.0]], [[79.0, 0.0]]])
>>> out, out_pts = apply_batch_tfms(tfms, x, points=pts)
>>> out_pts.shape
torch.Size([2, 1, 2])
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..core.registry import register_transform
from .warp import _check_points, _eff, _grid, _pack, _resample, _window  # noqa: F401 (_grid: tests)

__all__ = ["BatchTransform", "GeometricAug", "BatchResize", "LightingAug", "aug_transforms",
           "imagenet_stats", "is_random", "validation_tfms", "apply_batch_tfms"]

#: ImageNet mean and std (RGB, ``[0, 1]`` pixels), as in fastai.
imagenet_stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

_MODES = ("bilinear", "nearest", "bicubic")
_PADS = ("reflection", "zeros", "border")


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}")
    if min(hw) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return hw


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


# --- the protocol ------------------------------------------------------------------------------------

class BatchTransform:
    """Base of batch transforms: ``tfm(images, masks=None, *, points=None)`` on float ``[B, C, H, W]`` images
    in ``[0, 1]`` (``Normalize`` excepted), ``[B, H, W]`` integer masks and ``[B, N, 2]`` pixel key points;
    returns what it got (see the module docstring). ``random`` transforms run in training only; outside
    training `apply_batch_tfms` uses `for_validation()` instead.

    >>> class Invert(BatchTransform):               # deterministic (random = False): also runs at validation
    ...     def __call__(self, images, masks=None, *, points=None):
    ...         return 1 - images if masks is None else (1 - images, masks)
    >>> apply_batch_tfms([Invert()], torch.zeros(2, 3, 4, 4), training=False).mean().item()
    1.0
    """

    random: bool = False

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None, *,
                 points: torch.Tensor | None = None) -> Any:
        raise NotImplementedError

    def for_validation(self) -> BatchTransform | None:
        """The transform used outside training: ``self`` for deterministic transforms, ``None`` (skip it)
        for random ones unless they override this (e.g. presizing still resizes at validation)."""
        return None if self.random else self

    def export_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} cannot be exported")


def is_random(tfm: Any) -> bool:
    """Whether a transform changes from call to call in training (unknown callables count as random)."""
    return bool(getattr(tfm, "random", True))


def _validation_version(tfm: Any) -> Any:
    fn = getattr(tfm, "for_validation", None)
    if callable(fn):
        return fn()
    return None if is_random(tfm) else tfm


def validation_tfms(tfms: Sequence[Any]) -> list[Any]:
    """The transforms that run outside training (validation, inference, export), in order.

    >>> from learnkit.vision.normalize import Normalize
    >>> [type(t).__name__ for t in validation_tfms(aug_transforms(size=64) + [Normalize(*imagenet_stats)])]
    ['BatchResize', 'Normalize']
    """
    return [v for v in map(_validation_version, tfms) if v is not None]


def apply_batch_tfms(tfms: Sequence[Any], images: torch.Tensor, masks: torch.Tensor | None = None,
                     training: bool = True, points: torch.Tensor | None = None) -> Any:
    """Apply batch transforms in order; outside ``training`` each is replaced by its validation version
    (random ones are skipped, presizing becomes a centre crop). Returns ``images``, or the tuple
    ``(images[, masks][, points])`` of what was passed. Plain callables get ``images`` (or ``images, masks``)
    as before; with ``points`` only `BatchTransform` subclasses are accepted, since an unknown callable
    might move the image without moving the points."""
    if points is not None:
        points = _check_points(points, images)
    for t in tfms:
        if not training:
            t = _validation_version(t)
            if t is None:
                continue
        if points is None:
            out = t(images, masks) if masks is not None else t(images)
            images, masks = out if masks is not None else (out, None)
            continue
        if not isinstance(t, BatchTransform):
            raise TypeError(f"batch transform {t!r} cannot move key points; make it a BatchTransform subclass "
                            "that takes points=")
        out = t(images, masks, points=points)
        images, masks, points = out if masks is not None else (out[0], None, out[1])
    return _pack(images, masks, points)


@register_transform
class GeometricAug(BatchTransform):
    """Random flips, rotation, zoom, perspective warp and (with ``size``) a random crop, drawn per item and
    applied to the whole batch in one resampling (``grid_sample`` with ``mode``; masks with nearest
    neighbour; key points moved exactly).

    Each item is flipped left-right with probability 0.5 (``do_flip``; also top-bottom with ``flip_vert``);
    with probability ``p_affine`` it is rotated by up to ``max_rotate`` degrees, zoomed in by a factor in
    ``[min_zoom, max_zoom]`` around a random centre, and warped in perspective by up to ``max_warp``.
    Borders are filled by ``pad_mode`` (``'reflection'``, ``'zeros'`` or ``'border'``). ``batch=True``
    uses one draw for the whole batch.

    **Presizing** (``size`` set, an int or ``(height, width)``): the output is ``size`` whatever the input
    size. In training a random crop with the output's aspect ratio - area a fraction in ``[min_scale, 1]`` of
    the largest such crop, anywhere in the image - is flipped/rotated/zoomed/warped and resized, all in the
    same single interpolation. Outside training it becomes `BatchResize` (centre crop, resize).

    >>> aug = GeometricAug(size=(24, 32), min_scale=0.35)
    >>> aug(torch.rand(4, 3, 100, 90)).shape
    torch.Size([4, 3, 24, 32])
    >>> aug.for_validation()
    BatchResize(size=(24, 32), mode='bilinear', pad_mode='reflection', align_corners=True)
    """

    random = True

    def __init__(self, do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.0, min_zoom: float = 1.0,
                 max_zoom: float = 1.1, max_warp: float = 0.2, p_affine: float = 0.75, pad_mode: str = "reflection",
                 size: int | Sequence[int] | None = None, mode: str = "bilinear", align_corners: bool = True,
                 batch: bool = False, min_scale: float = 1.0):
        if min_zoom <= 0 or max_zoom < min_zoom:
            raise ValueError(f"need 0 < min_zoom <= max_zoom, got min_zoom={min_zoom}, max_zoom={max_zoom}")
        if not 0 <= p_affine <= 1:
            raise ValueError(f"p_affine must be in [0, 1], got {p_affine}")
        if not 0 <= max_warp < 1:
            raise ValueError(f"max_warp must be in [0, 1), got {max_warp}")
        if max_rotate < 0:
            raise ValueError(f"max_rotate must be >= 0, got {max_rotate}")
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        _check_choice("pad_mode", pad_mode, _PADS)
        _check_choice("mode", mode, _MODES)
        self.do_flip, self.flip_vert, self.max_rotate = do_flip, flip_vert, max_rotate
        self.min_zoom, self.max_zoom, self.max_warp = min_zoom, max_zoom, max_warp
        self.p_affine, self.pad_mode = p_affine, pad_mode
        self.size = None if size is None else _size2(size)
        self.mode, self.align_corners, self.batch, self.min_scale = mode, bool(align_corners), bool(batch), min_scale

    def draw(self, b: int, in_hw: tuple[int, int], device: torch.device | str = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One random draw for ``b`` items of size ``in_hw``: ``(matrix [B, 3, 3], warp [B, 2])``. The sampling
        grid maps each output pixel ``o`` (normalised) to ``matrix @ (o / (1 + warp . o))`` in the input."""
        n = 1 if self.batch else b

        def u(lo: float, hi: float) -> torch.Tensor:
            return torch.empty(n, device=device).uniform_(lo, hi)

        def sign() -> torch.Tensor:
            return torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)

        on = (torch.rand(n, device=device) < self.p_affine).float()
        warp = torch.stack([u(-self.max_warp, self.max_warp) * on / 2, u(-self.max_warp, self.max_warp) * on / 2], -1)
        z = (1 + (u(self.min_zoom, self.max_zoom) - 1) * on).clamp_min(1e-3)
        cx, cy = u(-1, 1) * (1 - 1 / z).clamp_min(0), u(-1, 1) * (1 - 1 / z).clamp_min(0)  # zoom centre stays inside
        t = u(-self.max_rotate, self.max_rotate) * on * math.pi / 180
        fx = sign() if self.do_flip else torch.ones(n, device=device)
        fy = sign() if self.flip_vert else torch.ones(n, device=device)
        out_hw = self.size or in_hw
        if self.size is None:
            scale, px, py = torch.ones(n, device=device), torch.zeros(n, device=device), torch.zeros(n, device=device)
        else:
            scale, px, py = u(self.min_scale, 1.0), u(-1, 1), u(-1, 1)
        # rotation in output pixel units (so non-square images are not sheared); r = pixels per unit, y over x
        r = _eff(out_hw[0], self.align_corners) / _eff(out_hw[1], self.align_corners)
        cos, sin = torch.cos(t) / z, torch.sin(t) / z
        aff = torch.zeros(n, 3, 3, device=device)
        # flip(translate(rotate(zoom(o)))): rows of the 2x3 affine, in the output's normalised coordinates
        aff[:, 0, 0], aff[:, 0, 1], aff[:, 0, 2] = fx * cos, -fx * sin * r, fx * cx
        aff[:, 1, 0], aff[:, 1, 1], aff[:, 1, 2] = fy * sin / r, fy * cos, fy * cy
        aff[:, 2, 2] = 1
        matrix = _window(in_hw, out_hw, self.align_corners, scale, px, py) @ aff
        return matrix.expand(b, 3, 3), warp.expand(b, 2)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None, *,
                 points: torch.Tensor | None = None) -> Any:
        in_hw = tuple(images.shape[-2:])
        matrix, warp = self.draw(images.shape[0], in_hw, images.device)
        return _resample(images, masks, points, matrix, warp, self.size or in_hw, self.mode, self.pad_mode,
                         self.align_corners)

    def for_validation(self) -> BatchTransform | None:
        return None if self.size is None else BatchResize(self.size, self.mode, self.pad_mode, self.align_corners)

    def export_config(self) -> dict:
        return {"type": "GeometricAug", "do_flip": self.do_flip, "flip_vert": self.flip_vert,
                "max_rotate": self.max_rotate, "min_zoom": self.min_zoom, "max_zoom": self.max_zoom,
                "max_warp": self.max_warp, "p_affine": self.p_affine, "pad_mode": self.pad_mode,
                "size": None if self.size is None else list(self.size), "mode": self.mode,
                "align_corners": self.align_corners, "batch": self.batch, "min_scale": self.min_scale}

    def __repr__(self) -> str:
        extra = f", size={self.size}, min_scale={self.min_scale}" if self.size else ""
        return (f"GeometricAug(do_flip={self.do_flip}, flip_vert={self.flip_vert}, max_rotate={self.max_rotate}, "
                f"zoom=({self.min_zoom}, {self.max_zoom}), max_warp={self.max_warp}, p_affine={self.p_affine}{extra})")


@register_transform
class BatchResize(BatchTransform):
    """Deterministic batch resize to ``size``: the largest centred crop with the output's aspect ratio,
    resized in one interpolation (``mode``; masks nearest; points moved). The validation version of
    presizing (`GeometricAug` with ``size``), so training and validation images share their geometry.

    >>> x = torch.rand(1, 1, 4, 8)
    >>> BatchResize(4, mode="nearest")(x).shape
    torch.Size([1, 1, 4, 4])
    >>> torch.allclose(BatchResize((4, 4))(x), x[..., 2:6], atol=1e-6)  # the centre, unchanged in scale
    True
    """

    def __init__(self, size: int | Sequence[int], mode: str = "bilinear", pad_mode: str = "reflection",
                 align_corners: bool = True):
        self.size = _size2(size)
        _check_choice("mode", mode, _MODES)
        _check_choice("pad_mode", pad_mode, _PADS)
        self.mode, self.pad_mode, self.align_corners = mode, pad_mode, bool(align_corners)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None, *,
                 points: torch.Tensor | None = None) -> Any:
        in_hw = tuple(images.shape[-2:])
        if in_hw == self.size:
            return _pack(images, masks, None if points is None else _check_points(points, images))
        b, dev = images.shape[0], images.device
        one = torch.ones(b, device=dev)
        matrix = _window(in_hw, self.size, self.align_corners, one, one * 0, one * 0)
        return _resample(images, masks, points, matrix, torch.zeros(b, 2, device=dev), self.size, self.mode,
                         self.pad_mode, self.align_corners)

    def export_config(self) -> dict:
        return {"type": "BatchResize", "size": list(self.size), "mode": self.mode, "pad_mode": self.pad_mode,
                "align_corners": self.align_corners}

    def __repr__(self) -> str:
        return (f"BatchResize(size={self.size}, mode={self.mode!r}, pad_mode={self.pad_mode!r}, "
                f"align_corners={self.align_corners})")


# --- photometric ------------------------------------------------------------------------------------

@register_transform
class LightingAug(BatchTransform):
    """Random brightness and contrast per item (with probability ``p_lighting``; one draw for the batch with
    ``batch=True``), in logit space so pixels never leave ``[0, 1]``: brightness moves the mid-grey by up to
    ``max_lighting`` and contrast scales by up to ``1 / (1 - max_lighting)``. Masks and points are unchanged.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(4, 3, 8, 8)
    >>> out = LightingAug(max_lighting=0.4, p_lighting=1.0)(x)
    >>> out.shape, 0 <= out.min().item() <= out.max().item() <= 1, LightingAug().for_validation()  # off at validation
    (torch.Size([4, 3, 8, 8]), True, None)
    """

    random = True

    def __init__(self, max_lighting: float = 0.2, p_lighting: float = 0.75, batch: bool = False):
        if not 0 <= max_lighting < 1:
            raise ValueError(f"max_lighting must be in [0, 1), got {max_lighting}")
        if not 0 <= p_lighting <= 1:
            raise ValueError(f"p_lighting must be in [0, 1], got {p_lighting}")
        self.max_lighting, self.p_lighting, self.batch = max_lighting, p_lighting, bool(batch)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None, *,
                 points: torch.Tensor | None = None) -> Any:
        b, dev, m = images.shape[0], images.device, self.max_lighting
        n = 1 if self.batch else b
        on = (torch.rand(n, device=dev) < self.p_lighting).to(images.dtype)
        bright = (0.5 + torch.empty(n, device=dev).uniform_(-m, m) / 2 * on).expand(b)
        log_c = (torch.empty(n, device=dev).uniform_(math.log(1 - m), -math.log(1 - m)) * on).expand(b)
        eps = 1e-4
        logit = torch.logit(images.clamp(eps, 1 - eps))
        out = torch.sigmoid(logit * log_c.exp().view(b, 1, 1, 1) + torch.logit(bright).view(b, 1, 1, 1))
        return _pack(out, masks, points)

    def export_config(self) -> dict:
        return {"type": "LightingAug", "max_lighting": self.max_lighting, "p_lighting": self.p_lighting,
                "batch": self.batch}

    def __repr__(self) -> str:
        return f"LightingAug(max_lighting={self.max_lighting}, p_lighting={self.p_lighting})"


def aug_transforms(mult: float = 1.0, do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.0,
                   min_zoom: float = 1.0, max_zoom: float = 1.1, max_lighting: float = 0.2, max_warp: float = 0.2,
                   p_affine: float = 0.75, p_lighting: float = 0.75, xtra_tfms: Sequence[Any] | Callable | None = None,
                   size: int | Sequence[int] | None = None, mode: str = "bilinear", pad_mode: str = "reflection",
                   align_corners: bool = True, batch: bool = False, min_scale: float = 1.0) -> list[Any]:
    """fastai's default data augmentation as batch transforms: ``[GeometricAug(...), LightingAug(...),
    *xtra_tfms]``. Pass the list as ``batch_tfms``.

    ``mult`` scales ``max_rotate``, ``max_lighting`` and ``max_warp`` (the last two capped at 0.95). With
    ``size`` the geometric step also presizes (see `GeometricAug`): a random crop of area ``min_scale``..1
    resized to ``size`` in training, a centre crop resized to ``size`` at validation - one interpolation
    (``mode``) either way. ``batch=True`` draws once per batch instead of once per item.

    >>> [type(t).__name__ for t in aug_transforms(size=224, min_scale=0.75)]
    ['GeometricAug', 'LightingAug']
    """
    if mult < 0:
        raise ValueError(f"mult must be >= 0, got {mult}")
    tfms: list[Any] = [GeometricAug(do_flip, flip_vert, max_rotate * mult, min_zoom, max_zoom,
                                    min(max_warp * mult, 0.95), p_affine, pad_mode, size=size, mode=mode,
                                    align_corners=align_corners, batch=batch, min_scale=min_scale)]
    if max_lighting > 0 and p_lighting > 0:
        tfms.append(LightingAug(min(max_lighting * mult, 0.95), p_lighting, batch=batch))
    if xtra_tfms is not None:
        tfms.extend(xtra_tfms if isinstance(xtra_tfms, (list, tuple)) else [xtra_tfms])
    return tfms
