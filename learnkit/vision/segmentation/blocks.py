"""`MaskBlock`: a segmentation mask file as a ``uint8 [H, W]`` map of class indices, for `DataBlock`.

The mask is read lazily in the loader worker (`load_mask`: 8-bit ``L``/``P``/``1`` files; a value outside the
codes is an error naming the file), moves with its image through every item transform (nearest neighbour),
and as the target makes the loaders `SegmentationDataLoaders` (loss: cross-entropy ignoring ``void_code``).

>>> import tempfile, numpy as np
>>> from PIL import Image
>>> d = Path(tempfile.mkdtemp()); (d / "img").mkdir(); (d / "lbl").mkdir()
>>> for i in range(4):
...     Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(d / "img" / f"{i}.png")
...     Image.fromarray(np.full((16, 16), i % 2, np.uint8)).save(d / "lbl" / f"{i}.png")
>>> dblock = DataBlock(blocks=(ImageBlock, MaskBlock(["bg", "fg"])), get_items=get_image_files,
...                    get_y=lambda o: d / "lbl" / o.name, splitter=EndSplitter(0.25), item_tfms=Resize(8))
>>> dls = dblock.dataloaders(d / "img", bs=2, num_workers=0, device="cpu")
>>> type(dls).__name__, [tuple(t.shape) for t in dls.one_batch()]
('SegmentationDataLoaders', [(2, 3, 8, 8), (2, 8, 8)])
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...core.block import BLOCK_TYPES, TransformBlock
from ...core.losses import CrossEntropyLossFlat
from .masks import load_mask, read_codes, resolve_void_code

__all__ = ["MaskBlock"]


class MaskBlock(TransformBlock):
    """Segmentation masks with classes ``codes`` (a list of names or a ``codes.txt`` path); ``void_code``: the
    mask value (or class name) that the loss and the metrics ignore.

    >>> block = MaskBlock(["sky", "road", "void"], void_code="void")
    >>> block, block.n_out, block.loss_func().ignore_index, block.encode(torch.tensor([[0, 2]])).dtype
    (MaskBlock(3 codes, void_code=2), 3, 2, torch.uint8)
    """

    is_mask = True

    def __init__(self, codes: Sequence[str] | str | Path, void_code: int | str | None = None):
        super().__init__()
        self.codes = read_codes(codes)
        self.void_code = resolve_void_code(void_code, self.codes)

    @property
    def dls_type(self) -> type:
        from .data import SegmentationDataLoaders
        return SegmentationDataLoaders

    @property
    def vocab(self) -> list[str]:
        return self.codes

    def encode(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.to(torch.uint8)
        return load_mask(value, len(self.codes), self.void_code)

    @property
    def n_out(self) -> int:
        return len(self.codes)

    def loss_func(self) -> CrossEntropyLossFlat:
        return CrossEntropyLossFlat(ignore_index=self.void_code if self.void_code is not None else -100)

    def export_config(self) -> dict:
        return {"type": "MaskBlock", "codes": list(self.codes), "void_code": self.void_code}

    def __repr__(self) -> str:
        return f"MaskBlock({len(self.codes)} codes, void_code={self.void_code})"


BLOCK_TYPES["MaskBlock"] = lambda c: MaskBlock(c["codes"], c.get("void_code"))
