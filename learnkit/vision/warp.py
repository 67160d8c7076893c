"""Sampling-grid maths of the fused geometric batch transform (`learnkit.vision.augment.GeometricAug`).

Hand-written grid maths (rather than torchvision's per-image affine/perspective/resized_crop ops): every
item of the batch gets its own flip/rotate/zoom/warp/crop, all composed into one sampling grid, so the
whole batch is interpolated once, on the device, directly at the output size.

>>> m = torch.eye(3)[None]
>>> _grid(m, torch.zeros(1, 2), (2, 2), True)[0, 0, 0].tolist()  # identity: the top-left output pixel is (-1, -1)
[-1.0, -1.0]
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__: list[str] = []


def _check_points(points: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    if points.ndim != 3 or points.shape[-1] != 2 or points.shape[0] != images.shape[0]:
        raise ValueError(f"points must be [B, N, 2] with B = {images.shape[0]} images, got {tuple(points.shape)}")
    return points if points.is_floating_point() else points.float()


def _pack(images: torch.Tensor, masks: torch.Tensor | None, points: torch.Tensor | None) -> Any:
    """``images`` alone, or a tuple ``(images[, masks][, points])`` of what was given."""
    if masks is None and points is None:
        return images
    return tuple(t for t in (images, masks, points) if t is not None)


def _eff(n: int, align_corners: bool) -> int:
    """Pixels spanned by the normalised range [-1, 1] (``n - 1`` centre to centre with ``align_corners``)."""
    return n - 1 if align_corners and n > 1 else n


def _to_norm(p: torch.Tensor, n: int, align_corners: bool) -> torch.Tensor:
    """Pixel coordinate (pixel centres at integers) → grid_sample's normalised coordinate."""
    return p * 2 / (n - 1) - 1 if align_corners and n > 1 else (p * 2 + 1) / n - 1


def _from_norm(u: torch.Tensor, n: int, align_corners: bool) -> torch.Tensor:
    return (u + 1) * (n - 1) / 2 if align_corners and n > 1 else ((u + 1) * n - 1) / 2


def _base(n: int, align_corners: bool, device: torch.device) -> torch.Tensor:
    """Normalised coordinates of the centres of ``n`` output pixels."""
    return _to_norm(torch.arange(n, device=device, dtype=torch.float32), n, align_corners)


def _window(in_hw: tuple[int, int], out_hw: tuple[int, int], align_corners: bool, scale: torch.Tensor,
            px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` map from output-normalised to input-normalised coordinates for a crop with the output's
    aspect ratio, ``scale`` of the area of the largest such crop, its centre at ``(px, py)`` of the free
    range (``-1``..``1``; 0 is centred)."""
    (h, w), (th, tw) = in_hw, out_hw
    ew, eh, etw, eth = _eff(w, align_corners), _eff(h, align_corners), _eff(tw, align_corners), _eff(th, align_corners)
    k = min(ew / etw, eh / eth) * scale.sqrt()  # input pixels per output pixel
    sx, sy = k * etw / ew, k * eth / eh
    m = torch.zeros(scale.shape[0], 3, 3, device=scale.device)
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = sx, sy, 1
    m[:, 0, 2], m[:, 1, 2] = px * (1 - sx).clamp_min(0), py * (1 - sy).clamp_min(0)
    return m


def _grid(matrix: torch.Tensor, warp: torch.Tensor, out_hw: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Sampling grid ``[B, h, w, 2]``: output pixel → perspective divide by ``1 + a*x + c*y`` → ``matrix``."""
    b = matrix.shape[0]
    dev = matrix.device
    ys, xs = torch.meshgrid(_base(out_hw[0], align_corners, dev), _base(out_hw[1], align_corners, dev), indexing="ij")
    x, y = xs.expand(b, *xs.shape), ys.expand(b, *ys.shape)
    den = 1 + warp[:, 0, None, None] * x + warp[:, 1, None, None] * y
    x, y = x / den, y / den
    m = matrix[:, :, :, None, None]
    return torch.stack([m[:, 0, 0] * x + m[:, 0, 1] * y + m[:, 0, 2], m[:, 1, 0] * x + m[:, 1, 1] * y + m[:, 1, 2]], -1)


def _move_points(points: torch.Tensor, matrix: torch.Tensor, warp: torch.Tensor, in_hw: tuple[int, int],
                 out_hw: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Where the content at input ``points [B, N, 2]`` lands in the output: the inverse of `_grid`'s map.

    The grid maps output ``o`` to input ``M @ (o / (1 + a*o_x + c*o_y))``; with ``v = M^-1 @ input`` the
    perspective inverts in closed form: ``o = v / (1 - a*v_x - c*v_y)``."""
    x = _to_norm(points[..., 0].float(), in_hw[1], align_corners)
    y = _to_norm(points[..., 1].float(), in_hw[0], align_corners)
    m = matrix.float()
    a, b, c, d = m[:, 0, 0, None], m[:, 0, 1, None], m[:, 1, 0, None], m[:, 1, 1, None]
    det = a * d - b * c  # the 2x2 inverse in closed form (float64 linalg.inv is missing on some devices)
    x, y = x - m[:, 0, 2, None], y - m[:, 1, 2, None]
    vx, vy = (d * x - b * y) / det, (a * y - c * x) / det
    den = 1 - warp[:, 0, None] * vx - warp[:, 1, None] * vy
    den = torch.where(den.abs() < 1e-6, torch.full_like(den, 1e-6), den)  # (only far outside the image)
    ox, oy = _from_norm(vx / den, out_hw[1], align_corners), _from_norm(vy / den, out_hw[0], align_corners)
    return torch.stack([ox, oy], -1).to(points.dtype)


def _resample(images: torch.Tensor, masks: torch.Tensor | None, points: torch.Tensor | None, matrix: torch.Tensor,
              warp: torch.Tensor, out_hw: tuple[int, int], mode: str, pad_mode: str, align_corners: bool) -> Any:
    """One ``grid_sample`` for the images (``mode``), one for the masks (nearest), closed form for the points."""
    grid = _grid(matrix, warp, out_hw, align_corners)
    out = F.grid_sample(images, grid.to(images.dtype if images.is_floating_point() else torch.float32), mode=mode,
                        padding_mode=pad_mode, align_corners=align_corners)
    if masks is not None:
        m = F.grid_sample(masks[:, None].float(), grid.float(), mode="nearest", padding_mode=pad_mode,
                          align_corners=align_corners)
        masks = m[:, 0].round().to(masks.dtype)
    if points is not None:
        points = _move_points(_check_points(points, images), matrix, warp, tuple(images.shape[-2:]), out_hw,
                              align_corners)
    return _pack(out, masks, points)
