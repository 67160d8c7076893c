"""`PointBlock`: key points (``(x, y)`` pixel coordinates) as the regression target of an image, for `DataBlock`.

``get_y`` gives the points of an item: a tensor, array or list of ``(x, y)`` pairs (``[N, 2]``; one point may be
given as ``(x, y)``), the same count ``N`` for every item, pixel centres at integer coordinates. Each point must
lie on its original image (``-0.5 <= x <= W - 0.5``, same for y) or an error names the item and the point.
The points move with their image through every item transform (``Resize``...) in the loader worker and every
batch transform on the device (training augmentation, and the validation resize), then become the target:
``[B, 2N]`` values ``x0, y0, x1, y1, ...`` scaled to ``[-1, 1]`` over the final image of width W and height H,

    ``x' = (x + 0.5) / W * 2 - 1``,  ``y' = (y + 0.5) / H * 2 - 1``

(the ``align_corners=False`` convention of ``grid_sample``: -1 and 1 are the outer edges of the image, pixel
centres sit half a pixel inside). A point that augmentation moves off the image keeps its coordinates (a value
outside ``[-1, 1]``); it is neither clipped nor dropped. Loss: `MSELossFlat`; ``n_out = 2N``; use
``vision_learner(dls, arch, y_range=(-1, 1))``. `PointBlock.decode` turns the target (or a prediction) back into
``[N, 2]`` pixel coordinates of the model input.

>>> import pathlib, tempfile; from PIL import Image
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> for i in range(4):
...     Image.new("RGB", (24, 16)).save(d / f"{i}.png")
>>> dblock = DataBlock(blocks=(ImageBlock, PointBlock), get_items=get_image_files, get_y=lambda o: [[3.0, 5.0]],
...                    splitter=EndSplitter(0.25), item_tfms=Resize((8, 12)))
>>> dls = dblock.dataloaders(d, bs=2, num_workers=0, device="cpu")
>>> x, y = dls.one_batch(split=1)
>>> dls.c, tuple(y.shape), dls.y_block.decode(y[0], x.shape[-2:]).round(decimals=3).tolist()
(2, (1, 2), [[1.25, 2.25]])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..core.block import BLOCK_TYPES, TransformBlock
from ..core.losses import MSELossFlat

__all__ = ["PointBlock", "to_points", "check_points_inside", "scale_points", "unscale_points"]


def to_points(value: Any) -> torch.Tensor:
    """``value`` (``[N, 2]`` or one ``(x, y)``) as a float ``[N, 2]`` tensor of finite coordinates, or a clear error.

    >>> to_points((3, 4)).tolist(), to_points([[1, 2], [3, 4]]).shape
    ([[3.0, 4.0]], torch.Size([2, 2]))
    """
    try:
        t = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"PointBlock needs (x, y) coordinates from get_y, got {value!r}") from None
    if t.ndim == 1 and t.shape[0] == 2:
        t = t[None]
    if t.ndim != 2 or t.shape[-1] != 2 or t.shape[0] == 0:
        raise ValueError(f"PointBlock needs get_y to return [N, 2] (x, y) points (or one (x, y) pair), got shape "
                         f"{tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"the points {t.tolist()} have a missing or infinite coordinate")
    return t


def check_points_inside(points: torch.Tensor, hw: Sequence[int]) -> None:
    """Raise a `ValueError` naming the first point outside an image of size ``hw`` (``(H, W)``; the image spans
    ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` with pixel centres at integers)."""
    h, w = int(hw[0]), int(hw[1])
    outside = ((points[:, 0] < -0.5) | (points[:, 0] > w - 0.5) | (points[:, 1] < -0.5) | (points[:, 1] > h - 0.5))
    if outside.any():
        i = int(outside.nonzero()[0])
        x, y = points[i].tolist()
        raise ValueError(f"point {i} (x={x:g}, y={y:g}) is outside its {w}x{h} (width x height) image; points are "
                         "pixel coordinates (x, y) with 0 <= x <= W - 1, 0 <= y <= H - 1")


def scale_points(points: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """Pixel ``[..., N, 2]`` points on an ``(H, W)`` image → ``[..., 2N]`` values in ``[-1, 1]`` (see the module).

    >>> scale_points(torch.tensor([[-0.5, 3.5]]), (4, 8)).tolist()
    [-1.0, 1.0]
    """
    size = torch.tensor([hw[1], hw[0]], dtype=points.dtype, device=points.device)
    return ((points + 0.5) / size * 2 - 1).flatten(-2)


def unscale_points(y: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """The inverse of `scale_points`: ``[..., 2N]`` → pixel ``[..., N, 2]`` on an ``(H, W)`` image."""
    y = torch.as_tensor(y, dtype=torch.float32)
    size = torch.tensor([hw[1], hw[0]], dtype=y.dtype, device=y.device)
    return (y.unflatten(-1, (-1, 2)) + 1) / 2 * size - 0.5


class PointBlock(TransformBlock):
    """Key points of an image, ``n_points`` per item (default: the count of the first training item).

    The image block moves them through the item transforms; `ImageDataLoaders` through the batch transforms
    and scales them to the ``[-1, 1]`` target (see the module docstring).

    >>> b = PointBlock(); b.setup([[[1, 2], [3, 4]]]); b.n_out, b.encode([[5, 6], [7, 8]]).shape
    (4, torch.Size([2, 2]))
    """

    needs_setup = True
    #: moves with its image through every transform (see `BlockDataset`)
    is_points = True

    def __init__(self, n_points: int | None = None):
        super().__init__()
        if n_points is not None and (not isinstance(n_points, int) or n_points < 1):
            raise ValueError(f"n_points must be a positive integer or None, got {n_points!r}")
        self.n_points = n_points

    def check(self, value: Any) -> None:
        to_points(value)

    def setup(self, values: Sequence[Any], example: Any = None) -> None:
        """Take ``n_points`` from the first training item; every item is checked against it as it is loaded
        (lazily, in the loader worker: an error names the item)."""
        if not len(values):
            return
        try:
            n = to_points(values[0]).shape[0]
        except (TypeError, ValueError) as e:
            raise type(e)(f"first training item{f' {example}' if example else ''}: {e}") from None
        if self.n_points is not None and n != self.n_points:
            raise ValueError(f"PointBlock(n_points={self.n_points}) but the first training item"
                             f"{f' {example}' if example else ''} has {n} points")
        self.n_points = n

    def encode(self, value: Any) -> torch.Tensor:
        t = to_points(value)
        if self.n_points is not None and t.shape[0] != self.n_points:
            raise ValueError(f"get_y gave {t.shape[0]} points but the first item has {self.n_points}; every item "
                             "needs the same number of points")
        return t

    def decode(self, x: Any, size: Sequence[int] | None = None) -> torch.Tensor:
        """A target or prediction (``[2N]`` in ``[-1, 1]``) → ``[N, 2]`` pixel points on an image of ``size``
        (``(H, W)``, the model input); without ``size`` the ``[N, 2]`` points stay in ``[-1, 1]`` units."""
        x = torch.as_tensor(x).detach().float().cpu()
        return unscale_points(x, size) if size is not None else x.unflatten(-1, (-1, 2))

    @property
    def n_out(self) -> int | None:
        return 2 * self.n_points if self.n_points is not None else None

    def loss_func(self) -> MSELossFlat:
        return MSELossFlat()

    def export_config(self) -> dict:
        return {"type": "PointBlock", "n_points": self.n_points}

    def __repr__(self) -> str:
        return f"PointBlock(n_points={self.n_points})"


BLOCK_TYPES["PointBlock"] = lambda c: PointBlock(c.get("n_points"))
