"""Segmentation's `FeatureSource`: a U-Net's encoder maps, computed once while the encoder is frozen.

With the encoder frozen (no gradients, batch-norm held, no dropout or drop-path in it) and no random transform of
the training images, ``encoder(image)`` is the same every epoch. `EncoderFeatures` then runs the encoder once over
the training and validation images and `FrozenFeatureCache` trains the decoder on the stored maps (`EncoderMaps`
batches, which `UNet` takes in place of images): the same training as without the cache, for one encoder pass.
In `fine_tune`'s frozen phase the maps of the un-augmented images also serve `HeadFit`'s extra passes, so a new
decoder gets at least ``min_steps`` optimizer steps on small data (camvid_tiny: 10 batches an epoch) for the
cost of the decoder alone. `unet_learner` adds ``FrozenFeatureCache(EncoderFeatures())`` by default
(``cache_frozen_features=True``); when a condition fails it stays idle and says why in ``.reason``.

>>> cache = FrozenFeatureCache(EncoderFeatures(max_bytes=2**20))
>>> cache.source.max_bytes, cache.reason
(1048576, 'not fitted yet')
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from ...core.feature_cache import FeatureSource, FrozenFeatureCache, NotCached
from ...core.sharding import DistributedDL
from ..feature_cache import frozen_outputs, frozen_part_problem, images_fixed_or_why
from .unet import EncoderMaps, UNet

if TYPE_CHECKING:  # pragma: no cover
    from ...core.learner import Learner

__all__ = ["FrozenFeatureCache", "EncoderFeatures", "EncoderMapStore"]


class EncoderMapStore:
    """The encoder maps of every item (one tensor per level, items along the first dimension, dataset order),
    the input images when the decoder reads them (``last_cross``), and the targets: a batch is
    ``(EncoderMaps, *targets)``."""

    def __init__(self, maps: tuple[torch.Tensor, ...], images: torch.Tensor | None, size: tuple[int, int],
                 targets: tuple[torch.Tensor, ...]):
        self.maps, self.images, self.size, self.targets = maps, images, size, targets

    def __len__(self) -> int:
        return len(self.maps[0])

    def batch(self, idx: torch.Tensor) -> tuple:
        idx = idx.to(self.maps[0].device)
        maps = tuple(m[idx].contiguous(memory_format=torch.channels_last) for m in self.maps)
        images = None if self.images is None else self.images[idx]
        return (EncoderMaps(maps, images, self.size), *(t[idx.to(t.device)] for t in self.targets))


def _map_bytes(model: UNet, h: int, w: int) -> int:
    """Bytes of one item's encoder maps at input size ``h x w`` (float32), from the encoder's reductions."""
    info = model.encoder.feature_info
    return sum(4 * c * -(-h // r) * -(-w // r) for c, r in zip(info.channels(), info.reduction()))


class EncoderFeatures(FeatureSource):
    """The maps of a `UNet`'s frozen encoder, which the U-Net's decoder takes directly (`EncoderMaps`).

    Args:
        max_bytes: the most memory the stored maps of one split may take (EfficientNet-Lite0 at 96x128: 0.3 MB
            an image; at 288x384: 3 MB); above it the cache steps aside and says so.

    >>> from types import SimpleNamespace
    >>> EncoderFeatures().why_not_head_fit(SimpleNamespace(model=torch.nn.Linear(2, 2), train_bn=False))
    'the model is a Linear, not a UNet'
    """

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = max_bytes

    def why_not(self, learn: "Learner") -> str | None:
        return images_fixed_or_why(self, learn, "encoder")

    def why_not_head_fit(self, learn: "Learner") -> str | None:
        """As `why_not`, but augmentation is allowed: `fine_tune`'s frozen phase then trains the decoder on the
        maps of the un-augmented training images and masks (their validation-time transforms)."""
        model = learn.model
        if not isinstance(model, UNet):
            return f"the model is a {type(model).__name__}, not a UNet"
        return frozen_part_problem(model.encoder, learn, "encoder")

    def features(self, learn: "Learner", dl: DataLoader, shard: DistributedDL | None) -> EncoderMapStore:
        """The encoder maps of every item of ``dl``'s dataset, in dataset order (under DDP each rank computes an
        unshuffled shard's and the ranks gather them)."""
        model: UNet = learn.model
        keep_image = bool(getattr(model, "last_cross", False))
        sizes: list[tuple[int, int]] = []

        def run(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            size = tuple(x.shape[-2:])
            if not sizes:  # the first batch: the memory all items' maps will take
                need = len(dl.dataset) * (_map_bytes(model, *size) + (x[0].numel() * 4 if keep_image else 0))
                if need > self.max_bytes:
                    raise NotCached(f"the encoder maps would take {need / 2**20:.0f} MiB (> max_bytes)")
            elif size != sizes[0]:
                raise NotCached(f"the images come in different sizes ({sizes[0]} and {size}): resize them to one")
            sizes.append(size)
            maps = tuple(m.float() for m in model.encoder(x.contiguous(memory_format=torch.channels_last)))
            return (*maps, x.float()) if keep_image else maps

        out, targets = frozen_outputs(learn, dl, shard, model.encoder, run, desc="frozen encoder maps (computed once)")
        maps, images = (out[:-1], out[-1]) if keep_image else (out, None)
        return EncoderMapStore(maps, images, sizes[0], targets)
