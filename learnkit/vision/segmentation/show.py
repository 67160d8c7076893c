"""Showing segmentations: masks overlaid on their images, one fixed colour per code, with a legend.

Code ``i`` always gets colour ``code_colors(n)[i]`` (matplotlib's ``tab20``, ``tab20b`` and ``tab20c``, then
evenly spaced hues), so the same class looks the same in every figure. Void pixels are not coloured.
Every function returns the matplotlib ``Figure``.

>>> import matplotlib; matplotlib.use("Agg")
>>> import torch
>>> fig = show_segmentation(torch.rand(2, 3, 8, 8), [torch.randint(0, 3, (2, 8, 8))], ["a", "b", "c"])
>>> len(fig.axes), len(fig.legends)
(2, 1)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch


if TYPE_CHECKING:  # pragma: no cover
    from ...core.learner import Learner

__all__ = ["code_colors", "overlay_mask", "show_segmentation", "show_seg_results"]


def code_colors(n: int) -> torch.Tensor:
    """``[n, 3]`` RGB colours in ``[0, 1]``, fixed per code index.

    >>> code_colors(3).shape
    torch.Size([3, 3])
    """
    import matplotlib
    base: list[tuple[float, ...]] = []
    for name in ("tab20", "tab20b", "tab20c"):
        base += [tuple(c[:3]) for c in matplotlib.colormaps[name].colors]
    if n > len(base):
        import colorsys
        extra = n - len(base)
        base += [colorsys.hsv_to_rgb(i / extra, 0.8, 0.9) for i in range(extra)]
    return torch.tensor(base[:n], dtype=torch.float32)


def overlay_mask(image: torch.Tensor, mask: torch.Tensor, n_codes: int, void_code: int | None = None,
                 alpha: float = 0.5) -> torch.Tensor:
    """Blend ``mask`` (``[H, W]`` class indices) into ``image`` (``[3, H, W]`` floats in ``[0, 1]``) with the
    code colours; void pixels (and values outside the codes) keep the image. Returns ``[H, W, 3]``.

    >>> out = overlay_mask(torch.zeros(3, 1, 2), torch.tensor([[0, 1]]), n_codes=2, void_code=1, alpha=1.0)
    >>> out.shape, torch.equal(out[0, 0], code_colors(2)[0]), out[0, 1].tolist()   # the void pixel keeps the image
    (torch.Size([1, 2, 3]), True, [0.0, 0.0, 0.0])
    """
    img = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0)
    m = mask.detach().long().cpu()
    colors = code_colors(n_codes)
    valid = (m >= 0) & (m < n_codes)
    if void_code is not None:
        valid &= m != void_code
    painted = colors[m.clamp(0, n_codes - 1)]
    out = torch.where(valid[..., None], (1 - alpha) * img + alpha * painted, img)
    return out


def show_segmentation(images: torch.Tensor, masks: Sequence[torch.Tensor], codes: Sequence[str],
                      void_code: int | None = None, titles: Sequence[str] | None = None, alpha: float = 0.5,
                      ncols: int = 3, figsize: tuple[float, float] | None = None):
    """Show images ``[N, 3, H, W]`` with each of ``masks`` (``[N, H, W]`` each, e.g. target and prediction)
    overlaid; with several masks each row is one image and each column one mask (titled by ``titles``).
    A legend lists the codes that appear.

    >>> masks = torch.tensor([[[0, 1], [1, 2]]])
    >>> fig = show_segmentation(torch.rand(1, 3, 2, 2), [masks, masks], ["road", "car", "void"], void_code=2,
    ...                         titles=["target", "prediction"])
    >>> [ax.get_title() for ax in fig.axes], [t.get_text() for t in fig.legends[0].get_texts()]
    (['target', 'prediction'], ['road', 'car', 'void (void, not coloured)'])
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    n, k = len(images), len(masks)
    if k == 0:
        raise ValueError("show_segmentation needs at least one mask batch")
    if k > 1:
        nrows, cols = n, k
    else:
        cols = max(1, min(ncols, n))
        nrows = math.ceil(n / cols)
    fig, axs = plt.subplots(nrows, cols, figsize=figsize or (3.2 * cols, 2.6 * nrows + 0.8), squeeze=False)
    axs = list(axs.flat)
    present: set[int] = set()
    for i in range(n):
        for j in range(k):
            ax = axs[i * k + j]
            ax.imshow(overlay_mask(images[i], masks[j][i], len(codes), void_code, alpha).numpy())
            ax.set_axis_off()
            if titles is not None and k > 1 and i == 0:
                ax.set_title(titles[j], fontsize=10)
            present |= set(torch.unique(masks[j][i].detach().cpu()).tolist())
    for ax in axs[n * k:]:
        ax.set_axis_off()
    colors = code_colors(len(codes)).tolist()
    shown = [c for c in sorted(present) if 0 <= c < len(codes) and c != void_code]
    handles = [Patch(color=colors[c], label=str(codes[c])) for c in shown]
    if void_code is not None and void_code in present:
        name = codes[void_code] if void_code < len(codes) else str(void_code)
        handles.append(Patch(facecolor="none", edgecolor="grey", label=f"{name} (void, not coloured)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(6, max(1, len(handles))), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    return fig


def show_seg_results(learn: "Learner", ds_idx: int = 1, max_n: int = 4, alpha: float = 0.5,
                     figsize: tuple[float, float] | None = None):
    """Images of the first batch of ``learn.dls[ds_idx]`` with the target mask and the predicted mask
    side by side; returns the figure.

    >>> import tempfile; from pathlib import Path; from PIL import Image
    >>> d = Path(tempfile.mkdtemp()); (d / "img").mkdir(); (d / "lbl").mkdir()
    >>> for i in range(5):
    ...     Image.new("RGB", (8, 8), (40 * i,) * 3).save(d / "img" / f"{i}.png")
    ...     Image.new("L", (8, 8), i % 2).save(d / "lbl" / f"{i}.png")
    >>> dls = SegmentationDataLoaders.from_label_func(d, get_image_files(d / "img"), lambda o: d / "lbl" / o.name,
    ...                                               codes=["bg", "fg"], bs=2, device="cpu")
    >>> learn = Learner(dls, torch.nn.Conv2d(3, 2, 1), progress=False)    # any [B, 3, H, W] -> [B, 2, H, W] model
    >>> [ax.get_title() for ax in show_seg_results(learn).axes]
    ['target', 'prediction']
    """
    dls = learn.dls
    batch = next(iter(dls[ds_idx]))
    n = min(max_n, len(batch[0]))
    batch = tuple(b[:n] for b in batch)
    _, targs, dec = learn.get_preds(dl=[batch], with_decoded=True)
    x = dls.prepare_batch(batch, False)[0]
    masks: list[Any] = [targs, dec] if targs is not None else [dec]
    titles = ["target", "prediction"] if targs is not None else ["prediction"]
    return show_segmentation(dls.decode_images(x), masks, dls.codes, dls.void_code, titles=titles, alpha=alpha,
                             figsize=figsize)
