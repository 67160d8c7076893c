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

__all__ = ["ImageBlock", "PILImage", "PILImageBW", "verify_images", "to_grey"]


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """``uint8 [3, H, W]`` RGB to ``uint8 [1, H, W]`` luminance, as Pillow's ``convert("L")`` computes it
    (``(299 R + 587 G + 114 B) / 1000``, rounded); a grey image keeps its values exactly.

    >>> to_grey(torch.tensor([[[255]], [[255]], [[0]]], dtype=torch.uint8)).tolist()   # yellow
    [[[226]]]
    """
    if x.shape[0] == 1:
        return x
    w = torch.tensor([299, 587, 114], dtype=torch.int32).view(3, 1, 1)
    return ((x[:3].to(torch.int32) * w).sum(0, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)


class PILImage:
    """fastai's image class: with ``ImageBlock(cls=PILImage)`` (the default) images are RGB, ``uint8 [3, H, W]``.
    ``PILImage.create(item)`` decodes one (a path, bytes, a PIL image, an array or a tensor).

    >>> PILImage.create(torch.zeros(8, 8)).shape, PILImage.n_channels
    (torch.Size([3, 8, 8]), 3)
    """

    mode, n_channels = "RGB", 3

    @classmethod
    def create(cls, item: Any) -> torch.Tensor:
        x = image_to_tensor(item)
        return to_grey(x) if cls.n_channels == 1 else x


class PILImageBW(PILImage):
    """fastai's greyscale image class: ``ImageBlock(cls=PILImageBW)`` gives 1-channel images, ``uint8 [1, H, W]``
    (colour files are converted to luminance), and 1-channel batches (fastbook ch. 13's MNIST).

    >>> PILImageBW.create(torch.rand(3, 8, 8)).shape
    torch.Size([1, 8, 8])
    """

    mode, n_channels = "L", 1


_IMAGE_CLASSES = {"PILImage": PILImage, "PILImageBW": PILImageBW}


class ImageBlock(TransformBlock):
    """Images (a path, PIL image, array or tensor) as ``uint8 [3, H, W]`` tensors, decoded lazily; the
    `DataBlock`'s item transforms apply to them. As the input block it makes the loaders `ImageDataLoaders`.
    ``cls=PILImageBW`` makes them greyscale, ``uint8 [1, H, W]`` (fastai's ``ImageBlock(cls=PILImageBW)``).

    >>> block = ImageBlock()
    >>> img = block.encode(torch.rand(16, 24))              # a grey float image becomes uint8 RGB
    >>> img.shape, img.dtype, block.apply_item_tfms([Resize(8)], img, training=False).shape
    (torch.Size([3, 16, 24]), torch.uint8, torch.Size([3, 8, 8]))
    >>> ImageBlock(cls=PILImageBW).encode(torch.rand(3, 16, 24)).shape
    torch.Size([1, 16, 24])
    """

    def __init__(self, cls: type = PILImage):
        super().__init__()
        if not (isinstance(cls, type) and issubclass(cls, PILImage)):
            raise TypeError(f"ImageBlock's cls must be PILImage or PILImageBW, got {cls!r}")
        self.cls = cls

    @property
    def n_channels(self) -> int:
        """Channels of the images: 3 (RGB) or 1 (``PILImageBW``)."""
        return self.cls.n_channels

    @property
    def dls_type(self) -> type:
        from .data import ImageDataLoaders
        return ImageDataLoaders

    def encode(self, value: Any) -> torch.Tensor:
        return self.cls.create(value)

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
        return {"type": "ImageBlock", "cls": self.cls.__name__}

    @classmethod
    def from_config(cls, config: dict | None) -> "ImageBlock":
        """The block an export describes (older files, without ``cls``: RGB)."""
        name = (config or {}).get("cls", "PILImage")
        if name not in _IMAGE_CLASSES:
            raise ValueError(f"unknown image class {name!r} in an exported config (known: {sorted(_IMAGE_CLASSES)})")
        return cls(cls=_IMAGE_CLASSES[name])

    def __repr__(self) -> str:
        return "ImageBlock()" if self.cls is PILImage else f"ImageBlock(cls={self.cls.__name__})"


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
