"""Image transforms: item transforms on the CPU, batch transforms on the device.

*Item transforms* (`Resize`, `RandomResizedCrop`) run on each decoded ``uint8 [3, H, W]`` image, before
collation, through torchvision transforms v2. *Batch transforms* (`aug_transforms()`: `GeometricAug`,
`LightingAug`; `Normalize`) run on a whole float batch ``[B, 3, H, W]`` (pixels in ``[0, 1]``) on the
device, each item with its own random draw. Random transforms only run while training (``training=True``);
validation and inference see the deterministic ones only.

Every transform also takes a segmentation mask (``[H, W]`` item, ``[B, H, W]`` batch; class indices)
and moves it with the image: nearest-neighbour resampling, lighting untouched. Called with a mask, a
transform returns ``(image, mask)``; without one, just the image.

>>> img = torch.zeros(3, 100, 150, dtype=torch.uint8)
>>> Resize(64)(img).shape, Resize(64, method="pad")(img).shape
(torch.Size([3, 64, 64]), torch.Size([3, 64, 64]))
>>> x = torch.rand(4, 3, 32, 32)
>>> [t(x).shape for t in aug_transforms()] == [x.shape] * 2
True
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

__all__ = ["ItemTransform", "Resize", "RandomResizedCrop", "BatchTransform", "GeometricAug", "LightingAug",
           "Normalize", "aug_transforms", "imagenet_stats", "apply_item_tfms", "apply_batch_tfms", "is_random", "transform_from_config"]

#: ImageNet mean and std (RGB, ``[0, 1]`` pixels), as in fastai.
imagenet_stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

_INTERP = {"nearest": v2.InterpolationMode.NEAREST, "bilinear": v2.InterpolationMode.BILINEAR,
           "bicubic": v2.InterpolationMode.BICUBIC}


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


def _interp(name: str) -> v2.InterpolationMode:
    if name not in _INTERP:
        raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {name!r}")
    return _INTERP[name]


def _wrap(image: torch.Tensor, mask: torch.Tensor | None) -> tuple:
    return (tv_tensors.Image(image),) if mask is None else (tv_tensors.Image(image), tv_tensors.Mask(mask))


def _each(fn: Any, out: tuple, *args: Any, **kwargs: Any) -> tuple:
    """Apply a torchvision functional op to the image and the mask (it dispatches on their type)."""
    return tuple(fn(o, *args, **kwargs) for o in out)


def _unwrap(out: Any, has_mask: bool) -> Any:
    if has_mask:
        return out[0].as_subclass(torch.Tensor), out[1].as_subclass(torch.Tensor)
    return (out[0] if isinstance(out, tuple) else out).as_subclass(torch.Tensor)


# --- item transforms ----------------------------------------------------------------------------------

class ItemTransform:
    """Base of item transforms: ``tfm(image, mask=None, training=True)``.

    ``random`` says whether the output differs between calls in training (then it is not cached and is
    replaced by its deterministic ``training=False`` version for validation and inference).
    """

    random: bool = False

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None, training: bool = True) -> Any:
        raise NotImplementedError

    def export_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} cannot be exported")


class Resize(ItemTransform):
    """Resize every image to ``size`` (an int for a square, or ``(height, width)``), the same way in training
    and validation.

    ``method``: ``'crop'`` scales the image to cover ``size`` then takes the centre; ``'squish'`` scales each
    side to ``size`` (aspect ratio changes); ``'pad'`` scales the image to fit inside ``size`` and pads
    (``pad_mode`` ``'zeros'`` or ``'reflection'``). Antialiased; masks use nearest neighbour.
    """

    def __init__(self, size: int | Sequence[int], method: str = "crop", interpolation: str = "bicubic",
                 pad_mode: str = "zeros"):
        self.size = _size2(size)
        if method not in ("crop", "squish", "pad"):
            raise ValueError(f"method must be 'crop', 'squish' or 'pad', got {method!r}")
        if pad_mode not in ("zeros", "reflection"):
            raise ValueError(f"pad_mode must be 'zeros' or 'reflection', got {pad_mode!r}")
        self.method, self.interpolation, self.pad_mode = method, interpolation, pad_mode
        self._mode = _interp(interpolation)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None, training: bool = True) -> Any:
        out = _wrap(image, mask)
        h, w = image.shape[-2:]
        th, tw = self.size
        if self.method == "squish":
            out = _each(TF.resize, out, [th, tw], interpolation=self._mode, antialias=True)
        elif self.method == "crop":
            s = max(th / h, tw / w)
            nh, nw = max(th, round(h * s)), max(tw, round(w * s))
            if (nh, nw) != (h, w):
                out = _each(TF.resize, out, [nh, nw], interpolation=self._mode, antialias=True)
            out = _each(TF.center_crop, out, [th, tw])
        else:
            s = min(th / h, tw / w)
            nh, nw = min(th, max(1, round(h * s))), min(tw, max(1, round(w * s)))
            if (nh, nw) != (h, w):
                out = _each(TF.resize, out, [nh, nw], interpolation=self._mode, antialias=True)
            top, left = (th - nh) // 2, (tw - nw) // 2
            pad = [left, top, tw - nw - left, th - nh - top]
            if any(pad):
                out = _each(TF.pad, out, pad, padding_mode="reflect" if self.pad_mode == "reflection" else "constant")
        return _unwrap(out, mask is not None)

    def export_config(self) -> dict:
        return {"type": "Resize", "size": list(self.size), "method": self.method,
                "interpolation": self.interpolation, "pad_mode": self.pad_mode}

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, method={self.method!r}, interpolation={self.interpolation!r})"


class RandomResizedCrop(ItemTransform):
    """Training: crop a random area (``min_scale``..1 of the image, aspect ratio in ``ratio``) and resize it to
    ``size`` (torchvision's ``RandomResizedCrop``). Validation: scale the short side to ``size * (1 + val_xtra)``
    and take the centre."""

    random = True

    def __init__(self, size: int | Sequence[int], min_scale: float = 0.08,
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), interpolation: str = "bicubic", val_xtra: float = 0.14):
        self.size = _size2(size)
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        self.min_scale, self.ratio, self.interpolation, self.val_xtra = min_scale, tuple(ratio), interpolation, val_xtra
        self._rrc = v2.RandomResizedCrop(self.size, scale=(min_scale, 1.0), ratio=self.ratio,
                                         interpolation=_interp(interpolation), antialias=True)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None, training: bool = True) -> Any:
        if training:
            return _unwrap(self._rrc(*_wrap(image, mask)), mask is not None)
        th, tw = self.size
        big = (round(th * (1 + self.val_xtra)), round(tw * (1 + self.val_xtra)))
        out = Resize(big, "crop", self.interpolation)(image, mask)
        out = _wrap(*out) if mask is not None else _wrap(out, None)
        return _unwrap(_each(TF.center_crop, out, list(self.size)), mask is not None)

    def export_config(self) -> dict:
        return {"type": "RandomResizedCrop", "size": list(self.size), "min_scale": self.min_scale,
                "ratio": list(self.ratio), "interpolation": self.interpolation, "val_xtra": self.val_xtra}

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, min_scale={self.min_scale})"


def apply_item_tfms(tfms: Sequence[Any], image: torch.Tensor, mask: torch.Tensor | None = None,
                    training: bool = True) -> Any:
    """Apply item transforms in order. Plain callables (e.g. a torchvision v2 transform) get ``image``
    (or ``(image, mask)``) and run in training and validation alike."""
    for t in tfms:
        if isinstance(t, ItemTransform):
            out = t(image, mask, training=training)
        else:
            out = t(*_wrap(image, mask))
            out = _unwrap(out, mask is not None)
        image, mask = (out if mask is not None else (out, None))
    return image if mask is None else (image, mask)


# --- batch transforms (on the device) ------------------------------------------------------------------

class BatchTransform:
    """Base of batch transforms: ``tfm(images, masks=None)`` on float ``[B, 3, H, W]`` images in ``[0, 1]``
    (``Normalize`` excepted) and ``[B, H, W]`` integer masks. ``random`` transforms run in training only."""

    random: bool = False

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Any:
        raise NotImplementedError

    def export_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} cannot be exported")


class GeometricAug(BatchTransform):
    """Random flips, rotation, zoom and perspective warp, drawn per item and applied to the whole batch in
    one resampling (``torch.nn.functional.grid_sample``; masks with nearest neighbour).

    Each item is flipped left-right with probability 0.5 (``do_flip``; also top-bottom with ``flip_vert``);
    with probability ``p_affine`` it is rotated by up to ``max_rotate`` degrees, zoomed in by a factor in
    ``[min_zoom, max_zoom]`` around a random centre, and warped in perspective by up to ``max_warp``.
    Borders are filled by ``pad_mode`` (``'reflection'``, ``'zeros'`` or ``'border'``).
    """

    random = True

    def __init__(self, do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.0, min_zoom: float = 1.0,
                 max_zoom: float = 1.1, max_warp: float = 0.2, p_affine: float = 0.75, pad_mode: str = "reflection"):
        if min_zoom <= 0 or max_zoom < min_zoom:
            raise ValueError(f"need 0 < min_zoom <= max_zoom, got {min_zoom}, {max_zoom}")
        if not 0 <= p_affine <= 1:
            raise ValueError(f"p_affine must be in [0, 1], got {p_affine}")
        if pad_mode not in ("reflection", "zeros", "border"):
            raise ValueError(f"pad_mode must be 'reflection', 'zeros' or 'border', got {pad_mode!r}")
        self.do_flip, self.flip_vert, self.max_rotate = do_flip, flip_vert, max_rotate
        self.min_zoom, self.max_zoom, self.max_warp, self.p_affine, self.pad_mode = min_zoom, max_zoom, max_warp, p_affine, pad_mode

    def _grid(self, b: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        """Sampling grid ``[B, H, W, 2]``: for each output pixel, where to read in the input (``[-1, 1]``)."""
        def u(lo, hi):
            return torch.empty(b, device=device).uniform_(lo, hi)
        on = (torch.rand(b, device=device) < self.p_affine).float()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=device), torch.linspace(-1, 1, w, device=device),
                                indexing="ij")
        x, y = xs.expand(b, h, w), ys.expand(b, h, w)
        # perspective: divide by 1 + a*x + b*y
        a, c = (u(-self.max_warp, self.max_warp) * on / 2)[:, None, None], (u(-self.max_warp, self.max_warp) * on / 2)[:, None, None]
        den = 1 + a * x + c * y
        x, y = x / den, y / den
        # zoom in around a random centre (stays inside the image)
        z = 1 + (u(self.min_zoom, self.max_zoom) - 1) * on
        z = z.clamp_min(1e-3)
        cx, cy = u(-1, 1) * (1 - 1 / z).clamp_min(0), u(-1, 1) * (1 - 1 / z).clamp_min(0)
        x, y = x / z[:, None, None], y / z[:, None, None]
        # rotation in pixel units (so non-square images are not sheared)
        t = (u(-self.max_rotate, self.max_rotate) * on * math.pi / 180)[:, None, None]
        px, py = x * w / 2, y * h / 2
        x, y = (torch.cos(t) * px - torch.sin(t) * py) * 2 / w, (torch.sin(t) * px + torch.cos(t) * py) * 2 / h
        x, y = x + cx[:, None, None], y + cy[:, None, None]
        if self.do_flip:
            x = x * torch.where(torch.rand(b, device=device) < 0.5, -1.0, 1.0)[:, None, None]
        if self.flip_vert:
            y = y * torch.where(torch.rand(b, device=device) < 0.5, -1.0, 1.0)[:, None, None]
        return torch.stack([x, y], dim=-1)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Any:
        b, _, h, w = images.shape
        grid = self._grid(b, h, w, images.device).to(images.dtype if images.is_floating_point() else torch.float32)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode=self.pad_mode, align_corners=True)
        if masks is None:
            return out
        m = F.grid_sample(masks[:, None].float(), grid.float(), mode="nearest", padding_mode=self.pad_mode,
                          align_corners=True)
        return out, m[:, 0].round().to(masks.dtype)

    def __repr__(self) -> str:
        return (f"GeometricAug(do_flip={self.do_flip}, flip_vert={self.flip_vert}, max_rotate={self.max_rotate}, "
                f"zoom=({self.min_zoom}, {self.max_zoom}), max_warp={self.max_warp}, p_affine={self.p_affine})")


class LightingAug(BatchTransform):
    """Random brightness and contrast per item (with probability ``p_lighting``), in logit space so pixels
    never leave ``[0, 1]``: brightness moves the mid-grey by up to ``max_lighting`` and contrast scales by
    up to ``1 / (1 - max_lighting)``. Masks are unchanged."""

    random = True

    def __init__(self, max_lighting: float = 0.2, p_lighting: float = 0.75):
        if not 0 <= max_lighting < 1:
            raise ValueError(f"max_lighting must be in [0, 1), got {max_lighting}")
        self.max_lighting, self.p_lighting = max_lighting, p_lighting

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Any:
        b, dev, m = images.shape[0], images.device, self.max_lighting
        on = (torch.rand(b, device=dev) < self.p_lighting).to(images.dtype)
        bright = 0.5 + torch.empty(b, device=dev).uniform_(-m, m) / 2 * on
        log_c = torch.empty(b, device=dev).uniform_(math.log(1 - m), -math.log(1 - m)) * on
        eps = 1e-4
        logit = torch.logit(images.clamp(eps, 1 - eps))
        out = torch.sigmoid(logit * log_c.exp().view(b, 1, 1, 1) + torch.logit(bright).view(b, 1, 1, 1))
        return out if masks is None else (out, masks)

    def __repr__(self) -> str:
        return f"LightingAug(max_lighting={self.max_lighting}, p_lighting={self.p_lighting})"


class Normalize(BatchTransform):
    """``(x - mean) / std`` per channel on ``[0, 1]`` float images; ``decode`` undoes it (for display).

    >>> n = Normalize.from_stats(*imagenet_stats)
    >>> x = torch.rand(2, 3, 4, 4)
    >>> torch.allclose(n.decode(n(x)), x, atol=1e-6)
    True
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std need one value per channel and std > 0; got {mean}, {std}")

    @classmethod
    def from_stats(cls, mean: Sequence[float], std: Sequence[float]) -> "Normalize":
        return cls(mean, std)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1) if x.ndim == 4 else (-1, 1, 1)
        return (torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(shape),
                torch.tensor(self.std, device=x.device, dtype=x.dtype).view(shape))

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> Any:
        mean, std = self._stats(images)
        out = (images - mean) / std
        return out if masks is None else (out, masks)

    def decode(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(images)
        return images * std + mean

    def export_config(self) -> dict:
        return {"type": "Normalize", "mean": list(self.mean), "std": list(self.std)}

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def aug_transforms(mult: float = 1.0, do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.0,
                   min_zoom: float = 1.0, max_zoom: float = 1.1, max_lighting: float = 0.2, max_warp: float = 0.2,
                   p_affine: float = 0.75, p_lighting: float = 0.75, pad_mode: str = "reflection") -> list[BatchTransform]:
    """fastai's default data augmentation as batch transforms: ``[GeometricAug(...), LightingAug(...)]``.

    ``mult`` scales ``max_rotate``, ``max_lighting`` and ``max_warp``. Pass the list as ``batch_tfms``.
    """
    tfms: list[BatchTransform] = [GeometricAug(do_flip, flip_vert, max_rotate * mult, min_zoom, max_zoom,
                                               max_warp * mult, p_affine, pad_mode)]
    if max_lighting > 0 and p_lighting > 0:
        tfms.append(LightingAug(min(max_lighting * mult, 0.95), p_lighting))
    return tfms


def is_random(tfm: Any) -> bool:
    """Whether a transform changes from call to call in training (unknown callables count as random)."""
    return bool(getattr(tfm, "random", True))


def apply_batch_tfms(tfms: Sequence[Any], images: torch.Tensor, masks: torch.Tensor | None = None,
                     training: bool = True) -> Any:
    """Apply batch transforms in order, skipping the random ones when not ``training``."""
    for t in tfms:
        if not training and is_random(t):
            continue
        out = t(images, masks) if masks is not None else t(images)
        images, masks = out if masks is not None else (out, None)
    return images if masks is None else (images, masks)


def transform_from_config(config: dict) -> ItemTransform | BatchTransform:
    """Rebuild a transform from its ``export_config()`` (used by `load_learner`).

    >>> transform_from_config(Resize(32).export_config())
    Resize(size=(32, 32), method='crop', interpolation='bicubic')
    """
    cfg = dict(config)
    kind = cfg.pop("type", None)
    if kind == "Resize":
        return Resize(tuple(cfg["size"]), cfg["method"], cfg["interpolation"], cfg["pad_mode"])
    if kind == "RandomResizedCrop":
        return RandomResizedCrop(tuple(cfg["size"]), cfg["min_scale"], tuple(cfg["ratio"]), cfg["interpolation"],
                                 cfg["val_xtra"])
    if kind == "Normalize":
        return Normalize(cfg["mean"], cfg["std"])
    raise ValueError(f"unknown transform type {kind!r} in an exported config (known: Resize, RandomResizedCrop, Normalize)")
