"""Vision blocks for `DataBlock`: `ImageBlock`, plus `verify_images` (fastai's opt-in full check of a folder).

`ImageBlock` decodes an image lazily, inside the loader worker that needs it, with `load_image`
(``uint8 [3, H, W]`` RGB), then runs the item transforms (``Resize``...). Batches reach the device as
``uint8`` and become normalised floats there (`ImageDataLoaders.prepare_images`), with the batch transforms.

>>> import tempfile; from PIL import Image
>>> d = Path(tempfile.mkdtemp())
>>> for name in ["cat_1.png", "cat_2.png", "dog_1.png", "dog_2.png", "dog_3.png"]:
...     Image.new("RGB", (8, 8)).save(d / name)
>>> dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
...                    get_y=using_attr(RegexLabeller(r"^(\\w+)_\\d+"), "name"), splitter=RandomSplitter(0.4, seed=1))
>>> dls = dblock.dataloaders(d, bs=2, num_workers=0, device="cpu")
>>> dls.vocab, dls.one_batch()[0].shape, verify_images(get_image_files(d))
(['cat', 'dog'], torch.Size([2, 3, 8, 8]), [])
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..core.block import TransformBlock
from .io import ImageLoadError, image_to_tensor, load_image
from .points import check_points_inside
from .transforms import apply_item_tfms

__all__ = ["ImageBlock", "verify_images"]


class ImageBlock(TransformBlock):
    """Images (a path, PIL image, array or tensor) as ``uint8 [3, H, W]`` tensors, decoded lazily; the
    `DataBlock`'s item transforms apply to them. As the input block it makes the loaders `ImageDataLoaders`.

    >>> block = ImageBlock()
    >>> img = block.encode(torch.rand(16, 24))              # a grey float image becomes uint8 RGB
    >>> img.shape, img.dtype, block.apply_item_tfms([Resize(8)], img, training=False).shape
    (torch.Size([3, 16, 24]), torch.uint8, torch.Size([3, 8, 8]))
    """

    @property
    def dls_type(self) -> type:
        from .data import ImageDataLoaders
        return ImageDataLoaders

    def encode(self, value: Any) -> torch.Tensor:
        return image_to_tensor(value)

    def apply_item_tfms(self, tfms: Sequence[Any], x: torch.Tensor, training: bool,
                        mask: torch.Tensor | None = None, points: torch.Tensor | None = None,
                        original: bool = True) -> Any:
        """The item transforms on an image, with its mask (resampled with nearest neighbour) and/or its key
        points (``[N, 2]`` pixel ``(x, y)``; when ``original``, i.e. ``x`` is the decoded image, they must lie
        on it): ``image`` or the tuple ``(image[, mask][, points])``."""
        if mask is not None and tuple(mask.shape[-2:]) != tuple(x.shape[-2:]):
            raise ValueError(f"the mask is {mask.shape[-1]}x{mask.shape[-2]} (width x height) but its image is "
                             f"{x.shape[-1]}x{x.shape[-2]}; a mask must have its image's size")
        if points is not None and original:
            check_points_inside(points, x.shape[-2:])
        return apply_item_tfms(tfms, x, mask, training=training, points=points)

    def export_config(self) -> dict:
        return {"type": "ImageBlock"}


def verify_images(fns: Sequence[str | Path], n_threads: int = 4) -> list[Path]:
    """The files among ``fns`` that cannot be decoded (fastai's ``verify_images``): this reads every file, so it
    is opt-in; loaders built with ``on_error='skip'`` leave bad files out as they meet them instead.

    >>> import tempfile; from PIL import Image
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "broken.png").write_bytes(b"not an image")
    >>> Image.new("RGB", (4, 4)).save(d / "fine.png")
    >>> [f.name for f in verify_images(get_image_files(d))]
    ['broken.png']
    """
    fns = [Path(f) for f in fns]

    def bad(f: Path) -> bool:
        try:
            load_image(f)
            return False
        except ImageLoadError:
            return True
    with ThreadPoolExecutor(max(1, n_threads)) as ex:  # decoding releases the GIL
        flags = list(ex.map(bad, fns))
    return [f for f, b in zip(fns, flags) if b]
