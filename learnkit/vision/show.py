"""Showing images: grids of images with titles (`show_images`), a batch, and predictions next to targets.

Every function returns the matplotlib ``Figure`` (save it with ``fig.savefig("x.png")``); matplotlib is
imported only when something is shown.

>>> import matplotlib; matplotlib.use("Agg")
>>> fig = show_images(torch.rand(2, 3, 8, 8), ["a", "b"])
>>> len(fig.axes)
2
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch


if TYPE_CHECKING:  # pragma: no cover
    from ..core.learner import Learner

__all__ = ["TensorImage", "show_image", "show_images", "show_points", "show_results"]


def show_image(img: Any, ax: Any = None, title: str | None = None, color: str = "black", cmap: str | None = None,
               figsize: tuple[float, float] | None = None, ctx: Any = None) -> Any:
    """Show one image on ``ax`` (``ctx``: fastai's name for it); returns the axes.

    ``img`` is a tensor (``[C, H, W]`` with 1, 3 or 4 channels, or ``[H, W]``), a NumPy array or a PIL image.
    ``uint8`` values are 0-255; float colour images are clipped to ``[0, 1]``. A one-channel image is drawn with
    ``cmap`` (default grey) over ``[0, 1]`` (0-255 for ``uint8``) when its values lie there, and scaled to its own
    range otherwise (a convolution's output, fastbook ch. 13's ``show_image(top_edge3)``).

    >>> ax = show_image(torch.zeros(3, 4, 6, dtype=torch.uint8), title="black")
    >>> ax.get_title(), ax.get_images()[0].get_array().shape
    ('black', (4, 6, 3))
    >>> show_image(torch.tensor([[-3.0, 0.0], [1.0, 5.0]]), cmap="Greys").get_images()[0].get_clim()
    (-3.0, 5.0)
    """
    import matplotlib.pyplot as plt
    import numpy as np
    ax = ctx if ax is None else ax
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    if isinstance(img, torch.Tensor):
        x = img.detach().cpu()
        if x.ndim == 3 and x.shape[0] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
            x = x.permute(1, 2, 0)
        elif x.ndim == 3 and x.shape[0] in (1, 3, 4) and x.shape[-1] in (1, 3, 4) and x.shape[0] <= x.shape[-1]:
            x = x.permute(1, 2, 0)  # ambiguous (tiny image): channels first, as learnkit's batches are
        x = x.numpy()
    else:
        x = np.asarray(img)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 2:
        lo, hi = (0, 255) if x.dtype == np.uint8 else (0.0, 1.0)
        inside = x.size == 0 or (float(x.min()) >= lo and float(x.max()) <= hi)
        ax.imshow(x, cmap=cmap or "gray", vmin=lo if inside else None, vmax=hi if inside else None)
    else:
        ax.imshow(x if x.dtype == np.uint8 else np.clip(x.astype(np.float32), 0, 1), cmap=cmap)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, color=color, fontsize=9)
    return ax


class TensorImage(torch.Tensor):
    """An image tensor that can show itself: fastai's ``TensorImage``, for fastbook's
    ``TensorImage(dls.train.decode((x,))[0][0]).show(ctx=ax)``. Any tensor op keeps the type.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> img = TensorImage(torch.zeros(3, 4, 6))
    >>> type(img * 2).__name__, img.show(title="zeros").get_title()
    ('TensorImage', 'zeros')
    """

    @staticmethod
    def __new__(cls, x: Any) -> "TensorImage":
        return torch.as_tensor(x).as_subclass(cls)

    def show(self, ctx: Any = None, title: str | None = None, cmap: str | None = None,
             figsize: tuple[float, float] | None = None) -> Any:
        """`show_image` of this image on ``ctx`` (matplotlib axes; a new figure when ``None``); returns the axes."""
        return show_image(self.as_subclass(torch.Tensor), ax=ctx, title=title, cmap=cmap, figsize=figsize)


def _grid(n: int, nrows: int | None, ncols: int | None, figsize: tuple[float, float] | None, cell: float = 2.5):
    import matplotlib.pyplot as plt
    n = max(1, n)
    if ncols is None:
        ncols = math.ceil(n / nrows) if nrows else math.ceil(math.sqrt(n))
    nrows = nrows or math.ceil(n / ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=figsize or (cell * ncols, cell * nrows), squeeze=False)
    axs = list(axs.flat)
    for ax in axs[n:]:
        ax.set_axis_off()
    return fig, axs


def show_images(images: torch.Tensor | Sequence[torch.Tensor], titles: Sequence[str] | None = None,
                nrows: int | None = None, ncols: int | None = None, figsize: tuple[float, float] | None = None,
                colors: Sequence[str] | None = None):
    """A grid of images with optional titles (and title colours); returns the figure.

    >>> fig = show_images(torch.rand(3, 3, 8, 8), ["a", "b", "c"], nrows=1, colors=["green", "red", "green"])
    >>> [ax.get_title() for ax in fig.axes]
    ['a', 'b', 'c']
    """
    n = len(images) if not (nrows and ncols) else min(len(images), nrows * ncols)  # the grid's size at most
    fig, axs = _grid(n, nrows, ncols, figsize)
    for i in range(n):
        show_image(images[i], axs[i], titles[i] if titles is not None else None,
                   colors[i] if colors is not None else "black")
    fig.tight_layout()
    return fig


def show_points(images: torch.Tensor | Sequence[torch.Tensor], points: Sequence[torch.Tensor],
                preds: Sequence[torch.Tensor] | None = None, nrows: int | None = None, ncols: int | None = None,
                figsize: tuple[float, float] | None = None):
    """A grid of images with their key points (``[N, 2]`` pixel ``(x, y)``) as dots, and ``preds`` (if given)
    as red crosses; returns the figure.

    >>> fig = show_points(torch.rand(1, 3, 8, 8), [torch.tensor([[2.0, 3.0]])], [torch.tensor([[4.0, 4.0]])])
    """
    fig = show_images(images, nrows=nrows, ncols=ncols, figsize=figsize)
    for i, ax in enumerate(fig.axes[: len(images)]):
        p = torch.as_tensor(points[i]).detach().cpu()
        ax.scatter(p[:, 0], p[:, 1], s=12, c="lime", marker="o")
        if preds is not None:
            q = torch.as_tensor(preds[i]).detach().cpu()
            ax.scatter(q[:, 0], q[:, 1], s=16, c="red", marker="x")
    return fig


def show_results(learn: "Learner", ds_idx: int = 1, max_n: int = 9, nrows: int | None = None,
                 ncols: int | None = None, figsize: tuple[float, float] | None = None):
    """Images of the first validation batch titled ``target / prediction`` (green when right, red when
    wrong); returns the figure.

    >>> import tempfile; from pathlib import Path; from PIL import Image
    >>> d = Path(tempfile.mkdtemp())
    >>> for i in range(5):
    ...     Image.new("RGB", (16, 16), (50 * i,) * 3).save(d / f"{'ab'[i % 2]}_{i}.png")
    >>> dls = ImageDataLoaders.from_name_func(d, get_image_files(d), lambda n: n[0], bs=2, device="cpu")
    >>> fig = show_results(vision_learner(dls, "resnet18", pretrained=False, progress=False))
    >>> [ax.get_title().split(" / ")[0] for ax in fig.axes]    # titled "target / prediction"
    ['a']
    """
    dls = learn.dls
    batch = next(iter(dls[ds_idx]))
    n = min(max_n, len(batch[0]))
    batch = tuple(b[:n] for b in batch)
    probs, targs, dec = learn.get_preds(dl=[batch], with_decoded=True)
    x = dls.prepare_batch(batch, False)[0]
    if getattr(dls, "is_points", False):  # key points: targets as dots, predictions as crosses
        size = x.shape[-2:]
        return show_points(dls.decode_images(x), [dls.decode_target(t, size) for t in targs],
                           [dls.decode_target(d, size) for d in dec], nrows=nrows, ncols=ncols, figsize=figsize)
    titles, colors = [], []
    for t, d in zip(targs, dec):
        truth, pred = dls.decode_target(t), dls.decode_target(d.float() if dls.multi_label else d)
        titles.append(f"{truth}\n{pred}" if dls.multi_label else f"{truth} / {pred}")
        colors.append("green" if truth == pred else "red")
    return show_images(dls.decode_images(x), titles, nrows=nrows, ncols=ncols, figsize=figsize, colors=colors)
