"""The ONNX input of image models (classifiers and U-Nets): ``image``, ``uint8 [B, 3, H, W]`` RGB at the
training size; the graph turns it into what the model saw in validation (``[0, 1]`` floats, the fixed
batch transforms, the normalisation). See `learnkit.core.onnx`."""
from __future__ import annotations

from typing import Any

import torch

from ..core.onnx import OnnxSpec
from .transforms import apply_batch_tfms, is_random

__all__ = ["image_size", "image_onnx_spec"]


def image_size(dls: Any) -> tuple[int, int]:
    """``(height, width)`` the model is trained at: the size of the last sizing item transform (``Resize``,
    ``RandomResizedCrop``), else the size of the first validation (or training) image."""
    for t in reversed(dls.item_tfms):
        if getattr(t, "size", None) is not None:
            h, w = t.size
            return int(h), int(w)
    dl = dls[1] if dls.valid is not None else (dls[0] if dls.train is not None else None)
    if dl is not None:
        h, w = next(iter(dl))[0].shape[-2:]
        return int(h), int(w)
    raise ValueError("the image size is unknown (no Resize in item_tfms and no data): rebuild the DataLoaders "
                     "with item_tfms=Resize(size) to export a fixed-size ONNX graph")


def image_onnx_spec(dls: Any) -> OnnxSpec:
    """The `OnnxSpec` of ``ImageDataLoaders`` and ``SegmentationDataLoaders``."""
    h, w = image_size(dls)
    fixed = [t for t in dls.batch_tfms if not is_random(t)]
    norm = dls.normalize

    def prepare(image: torch.Tensor) -> tuple[torch.Tensor]:
        x = apply_batch_tfms(fixed, image.float() / 255, training=False)
        return (norm(x) if norm is not None else x,)

    c = int(getattr(dls, "n_channels", 3))
    example = torch.randint(0, 256, (2, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return OnnxSpec(["image"], (example,), prepare, sidecar={
        "input": f"image: uint8 {'RGB' if c == 3 else 'greyscale' if c == 1 else f'{c}-channel'} [batch, {c}, {h}, {w}] (resize to {w}x{h} as the item transforms do; "
                 "scaling and normalisation are in the graph)",
        "image_size": [h, w]})
