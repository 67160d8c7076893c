"""`ImageDataLoaders`: image classification data from folders, file names, data frames or lists.

The factories (`learnkit.vision.factories`) are thin wrappers over `DataBlock` (``(ImageBlock, CategoryBlock |
MultiCategoryBlock)``); after their required arguments (the path, the files, how to label them) they take the
same keyword-only options: ``valid_pct``/``seed`` (the automatic split: 20 %, seed 42), ``item_tfms`` (e.g.
``Resize(224)``), ``batch_tfms`` (e.g. ``aug_transforms()``), ``bs``, ``on_error`` (``'raise'``: a file that
cannot be labelled raises an error naming it when the loaders are built, one that cannot be read when a loader
meets it; ``'skip'``: it is left out with a warning, and listed in ``dls.skipped``), ``num_workers`` (``None``:
the CPUs, at most 8; see `default_num_workers`), ``cache`` (``True``: the decoded, presized images in a
memory-mapped file the workers share; default off) and ``device``. Images are decoded lazily, in the loader
workers. Labels may be any hashable values (strings, ints, bools); a list of labels per image (or
``label_delim``) makes a multi-label task. Data folders are only read.

>>> import tempfile; from PIL import Image
>>> d = Path(tempfile.mkdtemp())
>>> for name in ["cat_1.png", "cat_2.png", "dog_1.png", "dog_2.png", "dog_3.png"]:
...     Image.new("RGB", (8, 8)).save(d / name)
>>> dls = ImageDataLoaders.from_name_re(d, get_image_files(d), r"^(\\w+)_\\d+", valid_pct=0.4, bs=2, device="cpu")
>>> dls.vocab, dls.one_batch()[0].shape
(['cat', 'dog'], torch.Size([2, 3, 8, 8]))
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path  # noqa: F401 (the module docstring)
from typing import Any

import torch

from ..core.block import CategoryBlock, MultiCategoryBlock, TransformBlock, block_from_config
from ..core.blockdata import BlockDataset, SkipLog
from ..core.blockloader import collate_skipping
from ..core.data import DataLoaders, DeviceLoader, is_prepared, make_loader
from ..core.device import to_device
from ..core.datablock import Datasets
from ..core.items import py_value
from ..core.registry import register_dls
from .blocks import ImageBlock
from .factories import ImageFactories
from .io import get_image_files, image_items  # noqa: F401 (get_image_files: the module docstring)
from .points import scale_points
from .transforms import Normalize, apply_batch_tfms, is_random, tfms_from_config, tfms_to_config

__all__ = ["ImageDataLoaders"]


@register_dls
class ImageDataLoaders(ImageFactories, DataLoaders):
    """Loaders of ``(uint8 image [B, 3, H, W], target)`` batches; ``on_device`` turns images into normalised
    floats and, in training, applies the random batch transforms.

    Build one with a factory (``from_folder``, ``from_name_func``, ...) or a `DataBlock` whose input is an
    `ImageBlock`. Attributes: ``y_block`` (the target block: `CategoryBlock`, `MultiCategoryBlock`,
    `RegressionBlock`), ``vocab``, ``multi_label``, ``item_tfms``, ``batch_tfms``, ``normalize`` (set by
    `vision_learner` from the model's stats unless ``batch_tfms`` has a `Normalize`), ``skipped`` (``(file,
    reason)`` left out by ``on_error='skip'`` so far) and ``loss_func`` (the target block's default).

    >>> import tempfile; from PIL import Image
    >>> d = Path(tempfile.mkdtemp())
    >>> for name in ["cat_1.png", "cat_2.png", "dog_1.png", "dog_2.png", "dog_3.png"]:
    ...     Image.new("RGB", (8, 8)).save(d / name)
    >>> dls = ImageDataLoaders.from_name_func(d, get_image_files(d), lambda name: name.split("_")[0], valid_pct=0.4,
    ...                                       bs=2, device="cpu")
    >>> dls.vocab, dls.c, dls.multi_label, dls.loss_func
    (['cat', 'dog'], 2, False, CrossEntropyLossFlat())
    """

    def __init__(self, train: Any, valid: Any = None, device: str | torch.device | None = None,
                 vocab: Sequence[Any] | None = None, multi_label: bool = False, item_tfms: Sequence[Any] = (),
                 batch_tfms: Sequence[Any] = (), normalize: Normalize | None = None, bs: int = 64,
                 labeller: Callable[[Any], Any] | None = None, skipped: Sequence[tuple[str, str]] = (),
                 y_block: TransformBlock | None = None, skip_log: SkipLog | None = None,
                 image_block: ImageBlock | None = None):
        if y_block is None and vocab is not None:
            y_block = MultiCategoryBlock(vocab) if multi_label else CategoryBlock(vocab)
        super().__init__(train, valid, device=device, n_inp=1, vocab=getattr(y_block, "vocab", None))
        self.y_block, self.item_tfms, self.batch_tfms = y_block, list(item_tfms), list(batch_tfms)
        self.normalize, self.bs, self.labeller = normalize, bs, labeller
        self._skipped, self.skip_log = list(skipped), skip_log
        self.loss_func = y_block.loss_func() if y_block is not None else None
        self.cache: dict[str, Any] = {}
        self.image_block = image_block if image_block is not None else ImageBlock()

    @property
    def n_channels(self) -> int:
        """Channels of the images: 3, or 1 with ``ImageBlock(cls=PILImageBW)``."""
        return self.image_block.n_channels

    @classmethod
    def from_datasets(cls, dsets: Datasets, train: Any, valid: Any, batch_tfms: Sequence[Any], bs: int,
                      device: torch.device) -> "ImageDataLoaders":
        """The loaders a `DataBlock` with an `ImageBlock` input builds (one image input, at most one target)."""
        target_type = getattr(dsets.targets[0], "dls_type", None) if len(dsets.targets) == 1 else None
        if target_type is not None and target_type is not cls:  # e.g. MaskBlock: SegmentationDataLoaders
            return target_type.from_datasets(dsets, train, valid, batch_tfms, bs, device)
        if dsets.n_inp != 1 or len(dsets.targets) > 1:
            raise ValueError(f"ImageDataLoaders takes one image input and at most one target block; this DataBlock "
                             f"has {dsets.n_inp} inputs and {len(dsets.targets)} targets")
        y_block = dsets.targets[0] if dsets.targets else None
        image_block = dsets.blocks[0] if isinstance(dsets.blocks[0], ImageBlock) else None
        dls = cls(train, valid, device=device, item_tfms=dsets.train.item_tfms, batch_tfms=batch_tfms, bs=bs,
                  labeller=dsets.train.getters[1] if y_block is not None else None, y_block=y_block,
                  skip_log=dsets.skip_log, image_block=image_block)
        dls.cache = {name: ds.cache for name, ds in (("train", dsets.train), ("valid", dsets.valid))
                     if ds is not None and ds.cache is not None}
        dls.setup_normalize()
        return dls

    def setup_normalize(self) -> None:
        """Give a `Normalize` of the batch transforms created without statistics (``Normalize()``) the
        per-channel mean and std of the first training batch, after the transforms before it (fastai's)."""
        for i, t in enumerate(self.batch_tfms):
            if isinstance(t, Normalize) and t.mean is None and self.train is not None and len(self.train):
                x = next(iter(self[0]))[0]  # the collated uint8 batch
                x = apply_batch_tfms(self.batch_tfms[:i], to_device(x, self.device).float().div_(255), training=True)
                t.setup(x)

    @property
    def multi_label(self) -> bool:
        return isinstance(self.y_block, MultiCategoryBlock)

    @property
    def c(self) -> int | None:
        """The number of model outputs the target needs (classes, labels or regression values)."""
        return self.y_block.n_out if self.y_block is not None else None

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(file, reason)`` for every image left out by ``on_error='skip'`` so far: unlabelled ones at build
        time, unreadable ones as the loaders meet them."""
        return self._skipped + (self.skip_log.read() if self.skip_log is not None else [])

    # --- the device side ---------------------------------------------------------------------------
    @property
    def has_normalize(self) -> bool:
        return self.normalize is not None or any(isinstance(t, Normalize) for t in self.batch_tfms)

    @property
    def train_deterministic(self) -> bool:
        """Whether a training item is the same every epoch (no random item or batch transforms)."""
        ds = getattr(self.train, "dataset", None)
        return bool(getattr(ds, "deterministic", False)) and not any(is_random(t) for t in self.batch_tfms)

    @property
    def is_points(self) -> bool:
        """Whether the target is key points (`PointBlock`): they move with the images through the batch
        transforms and become ``[B, 2N]`` values in ``[-1, 1]``."""
        return bool(getattr(self.y_block, "is_points", False))

    def on_device(self, batch: tuple, training: bool) -> tuple:
        """``uint8`` image batches → float in ``[0, 1]`` → batch transforms (random ones only when
        ``training``) → normalisation. Key-point targets move with the images, then are scaled to ``[-1, 1]``
        over the final size (`PointBlock`). Inputs that are not ``uint8 [B, C, H, W]`` pass unchanged."""
        x = batch[0]
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.dtype == torch.uint8):
            return batch
        if self.is_points and len(batch) > 1:
            x, points = self.prepare_images(x, training, points=batch[1])
            return (x, scale_points(points, x.shape[-2:]), *batch[2:])
        return (self.prepare_images(x, training), *batch[1:])

    def prepare_images(self, x: torch.Tensor, training: bool, tfms: Sequence[Any] | None = None,
                       points: torch.Tensor | None = None) -> Any:
        """``uint8 [B, C, H, W]`` → float ``[0, 1]`` → ``tfms`` (default ``batch_tfms``; random ones only when
        ``training``) → ``normalize``, in channels-last layout on CPU/CUDA. With ``points`` (``[B, N, 2]`` pixel
        coordinates) returns ``(images, moved points)``. A batch already prepared (iterated from ``dls.valid`` or
        ``dls.test_dl(...)``) is returned as it is."""
        if points is None and is_prepared(x):
            return x
        tfms = self.batch_tfms if tfms is None else tfms
        if points is None:
            x = apply_batch_tfms(tfms, x.float().div_(255), training=training)
        else:
            x, points = apply_batch_tfms(tfms, x.float().div_(255), training=training, points=points)
        if self.normalize is not None:
            x = self.normalize(x)
        if x.device.type in ("cpu", "cuda"):  # convolutions run about twice as fast in this layout on CPUs
            x = x.contiguous(memory_format=torch.channels_last)
        return x if points is None else (x, points)

    def decode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation of a batch for display: float images in ``[0, 1]``."""
        norms = [t for t in self.batch_tfms if isinstance(t, Normalize)] + ([self.normalize] if self.normalize else [])
        for n in reversed(norms):
            x = n.decode(x)
        return x.clamp(0, 1)

    def decode_target(self, y: torch.Tensor, size: Sequence[int] | None = None) -> Any:
        """The readable target: a label, a value, or for key points ``[N, 2]`` pixel points on an image of
        ``size`` (``(H, W)``, the model input; without it in ``[-1, 1]`` units)."""
        if self.is_points:
            return self.y_block.decode(y, size)
        return self.y_block.decode(y) if self.y_block is not None else y

    def decode_predict(self, item: Any, decoded: torch.Tensor, probs: torch.Tensor) -> tuple:
        """`Learner.predict`: for key points ``(points [N, 2] in pixels of the model input, raw [2N] in
        [-1, 1], raw)``; otherwise as `DataLoaders.decode_predict`."""
        if not self.is_points:
            return super().decode_predict(item, decoded, probs)
        x = self.test_dl([item]).dataset[0][0][None].to(self.device)
        size = self.prepare_images(x, training=False).shape[-2:]
        return self.decode_target(decoded, size), decoded, probs

    # --- new items ---------------------------------------------------------------------------------
    def test_dl(self, items: Sequence[Any], with_labels: bool = False, bs: int | None = None) -> Any:
        """A loader over new images (paths, PIL images, arrays or tensors), preprocessed like the validation
        set (decoded lazily, in this process). ``with_labels=True`` labels path items the way the training data
        was labelled."""
        items = image_items(items)
        getters: list[Any] = [None]
        blocks: list[TransformBlock] = [self.image_block]
        if with_labels:
            if self.labeller is None or self.y_block is None:
                raise ValueError("with_labels=True needs the labelling rule of the training data, which an exported "
                                 "DataLoaders does not keep; label the items yourself")
            getters.append(self.labeller)
            blocks.append(self.y_block)
        ds = BlockDataset(items, getters, blocks, self.item_tfms, training=False,
                          step_names=["get_x", "get_y"][: len(blocks)])
        return DeviceLoader(make_loader(ds, bs or 2 * self.bs, shuffle=False, collate_fn=collate_skipping, device=self.device),
                            self, training=False)  # iterated: batches as the model sees them (fastai's)

    # --- display -----------------------------------------------------------------------------------
    def show_batch(self, max_n: int = 9, split: int = 0, nrows: int | None = None, ncols: int | None = None,
                   figsize: tuple[float, float] | None = None):
        """Images of one batch (augmented when ``split=0``) titled with their labels; returns the figure."""
        from .show import show_images
        x, y = self.one_batch(split)[:2]
        n = min(max_n, len(x), nrows * ncols if nrows and ncols else max_n)  # a 1x3 grid shows 3 (fastai's)
        if self.is_points:
            from .show import show_points
            return show_points(self.decode_images(x[:n]), [self.decode_target(t, x.shape[-2:]) for t in y[:n]],
                               nrows=nrows, ncols=ncols, figsize=figsize)
        return show_images(self.decode_images(x[:n]), [str(self.decode_target(t)) for t in y[:n]],
                           nrows=nrows, ncols=ncols, figsize=figsize)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["item_tfms"] = ", ".join(map(repr, self.item_tfms)) or "-"
        out["batch_tfms"] = ", ".join(map(repr, self.batch_tfms + ([self.normalize] if self.normalize else []))) or "-"
        skipped = self.skipped
        if skipped:
            out["skipped files"] = len(skipped)
        nw = getattr(self.train, "num_workers", None)
        if nw is not None:
            out["num_workers"] = nw
        out["cache"] = "; ".join(f"{k}: {c!r}" for k, c in self.cache.items()) or "off (decoded in the workers every epoch)"
        return out

    # --- export ------------------------------------------------------------------------------------
    def onnx_spec(self) -> Any:
        """The ONNX graph's input (``uint8`` images at the training size); see `learnkit.core.onnx`."""
        from .onnx_spec import image_onnx_spec
        return image_onnx_spec(self)

    def export_config(self) -> dict:
        return {"vocab": [py_value(v) for v in self.vocab] if self.vocab is not None else None,
                "multi_label": self.multi_label,
                "target": self.y_block.export_config() if self.y_block is not None else None,
                **tfms_to_config(self.item_tfms, self.batch_tfms, self.normalize), "bs": self.bs,
                **({"image_block": self.image_block.export_config()} if self.n_channels != 3 else {})}

    @classmethod
    def from_config(cls, config: dict, device: str | torch.device | None = None) -> "ImageDataLoaders":
        target = config.get("target")
        return cls(None, None, device=device, vocab=config["vocab"], multi_label=config["multi_label"],
                   y_block=block_from_config(target) if target else None, **tfms_from_config(config),
                   bs=int(config.get("bs", 64)), image_block=ImageBlock.from_config(config.get("image_block")))
