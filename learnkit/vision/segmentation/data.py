"""`SegmentationDataLoaders`: images and integer class masks, with a void code that loss and metrics skip.

Two factories: `SegmentationDataLoaders.from_label_func` (a function maps each image file to its mask
file; random split) and `SegmentationDataLoaders.from_folders` (image and mask folders with the same
file names, e.g. SegNet's CamVid ``train``/``trainannot``/``val``/``valannot``). Both are thin wrappers over
a `DataBlock` with ``(ImageBlock, MaskBlock(codes))``: the mask files must exist when the loaders are built;
each pair is decoded and checked (same size, values in ``codes``) lazily, in the loader workers, and an error
names the files. ``cache=True`` keeps the presized pairs in a memory-mapped file the workers share. Item transforms (``Resize``) and batch transforms (``aug_transforms()``,
torchvision v2 transforms) move image and mask together; the mask is resampled with nearest neighbour.
Data folders are only read.

>>> import tempfile, numpy as np
>>> from PIL import Image
>>> d = Path(tempfile.mkdtemp()); (d / "img").mkdir(); (d / "lbl").mkdir()
>>> for i in range(5):
...     Image.fromarray(np.full((32, 32, 3), 50 * i, np.uint8)).save(d / "img" / f"{i}.png")
...     Image.fromarray(np.full((32, 32), i % 2, np.uint8)).save(d / "lbl" / f"{i}.png")
>>> dls = SegmentationDataLoaders.from_label_func(d, sorted((d / "img").iterdir()), lambda o: d / "lbl" / o.name,
...                                               codes=["bg", "fg"], bs=2, device="cpu")
>>> x, y = dls.one_batch(); x.shape, y.shape, y.dtype
(torch.Size([2, 3, 32, 32]), torch.Size([2, 32, 32]), torch.int64)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.blockdata import BlockDataset
from ...core.blockloader import collate_skipping
from ...core.cache import presized_cache
from ...core.data import DataLoaders, DeviceLoader, make_loader
from ...core.datablock import DataBlock, Datasets
from ...core.items import Lookup
from ...core.losses import CrossEntropyLossFlat
from ...core.registry import register_dls
from ...core.split import IndexSplitter, RandomSplitter, check_split
from ..blocks import ImageBlock
from ..io import get_image_files, image_items
from ..transforms import Normalize, transform_from_config, validation_tfms
from .blocks import MaskBlock
from .dataset import check_masks_exist
from .masks import read_codes, resolve_void_code
from .transforms import apply_seg_batch_tfms, is_random_tfm
from ...core.paths import expand_path

__all__ = ["SegmentationDataLoaders", "FolderMaskLabeller"]


def _listify(o: Any) -> list:
    if o is None:
        return []
    return list(o) if isinstance(o, (list, tuple)) else [o]


def _mask_of(label_func: Callable[[Path], Any], image: Path) -> Path:
    try:
        return Path(label_func(image))
    except Exception as e:  # noqa: BLE001 - a user function can raise anything; we name the image
        raise ValueError(f"label_func failed on image {image}: {type(e).__name__}: {e}; it must return the path of "
                         "the image's mask file") from e


def _codes_from(codes: Any, path: Path) -> list[str]:
    if codes is None:
        if (path / "codes.txt").is_file():
            return read_codes(path / "codes.txt")
        raise ValueError(f"codes is required (the class names, index i = mask value i) and there is no {path / 'codes.txt'}; "
                         "pass codes=['background', ...] or codes='path/to/codes.txt'")
    if isinstance(codes, np.ndarray):
        codes = codes.tolist()
    return read_codes(codes)


class FolderMaskLabeller:
    """The mask of ``path/<image folder>/x.jpg`` is ``path/<its mask folder>/x.jpg`` or, if that does not
    exist, ``x.png`` (masks are usually PNG even when the images are JPEG).

    >>> FolderMaskLabeller("data", {"train": "trainannot"})(Path("data/train/a.png")).as_posix()
    'data/trainannot/a.png'
    """

    def __init__(self, path: str | Path, folders: dict[str, str]):
        self.path, self.folders = expand_path(path), dict(folders)

    def __call__(self, image: str | Path) -> Path:
        image = Path(image)
        for img_dir, mask_dir in self.folders.items():
            try:
                rel = image.relative_to(self.path / img_dir)
            except ValueError:
                continue
            mask = self.path / mask_dir / rel
            if not mask.is_file() and mask.with_suffix(".png").is_file():
                mask = mask.with_suffix(".png")
            return mask
        raise ValueError(f"image {image} is not inside any of the image folders "
                         f"{[str(self.path / d) for d in self.folders]}, so its mask cannot be found")


@register_dls
class SegmentationDataLoaders(DataLoaders):
    """Loaders of ``(uint8 images [B, 3, H, W], uint8 masks [B, H, W])`` batches; ``on_device`` makes the
    images normalised floats and the masks ``int64`` class maps, and in training applies the random batch
    transforms to both.

    Attributes: ``codes`` (= ``vocab``, class names), ``void_code`` (the mask value the loss and the metrics
    ignore, or ``None``), ``ignore_index`` (``void_code``, or -100 when there is none), ``item_tfms``,
    ``batch_tfms``, ``normalize`` (set by `unet_learner` from the encoder's stats unless ``batch_tfms`` has
    a `Normalize`) and ``loss_func`` (cross-entropy ignoring the void code).

    >>> import tempfile; from PIL import Image
    >>> d = Path(tempfile.mkdtemp())
    >>> for folder, n in [("train", 3), ("val", 1)]:          # SegNet's layout: train/, trainannot/, val/, valannot/
    ...     (d / folder).mkdir(); (d / f"{folder}annot").mkdir()
    ...     for i in range(n):
    ...         Image.new("RGB", (8, 6)).save(d / folder / f"{i}.png")
    ...         Image.new("L", (8, 6), 1).save(d / f"{folder}annot" / f"{i}.png")
    >>> dls = SegmentationDataLoaders.from_folders(d, codes=["road", "car", "void"], void_code="void", bs=2,
    ...                                            device="cpu")
    >>> dls.codes, dls.void_code, dls.ignore_index, [tuple(t.shape) for t in dls.one_batch()]
    (['road', 'car', 'void'], 2, 2, [(2, 3, 6, 8), (2, 6, 8)])
    """

    def __init__(self, train: Any, valid: Any = None, device: str | torch.device | None = None, *,
                 codes: Sequence[str] | str | Path, void_code: int | str | None = None,
                 item_tfms: Sequence[Any] = (), batch_tfms: Sequence[Any] = (), normalize: Normalize | None = None,
                 bs: int = 8, label_func: Callable[[Path], Any] | None = None):
        codes = read_codes(codes)
        super().__init__(train, valid, device=device, n_inp=1, vocab=codes)
        self.codes, self.void_code = codes, resolve_void_code(void_code, codes)
        self.item_tfms, self.batch_tfms = _listify(item_tfms), _listify(batch_tfms)
        self.normalize, self.bs, self.label_func = normalize, bs, label_func
        self.loss_func = CrossEntropyLossFlat(ignore_index=self.ignore_index)

    @property
    def ignore_index(self) -> int:
        """The target value the loss and metrics skip: the void code, or -100 (PyTorch's default)."""
        return self.void_code if self.void_code is not None else -100

    # --- the device side ---------------------------------------------------------------------------
    @property
    def has_normalize(self) -> bool:
        return self.normalize is not None or any(isinstance(t, Normalize) for t in self.batch_tfms)

    @property
    def train_deterministic(self) -> bool:
        """Whether a training pair is the same every epoch (no random item or batch transforms)."""
        ds = getattr(self.train, "dataset", None)
        return bool(getattr(ds, "deterministic", False)) and not any(is_random_tfm(t) for t in self.batch_tfms)

    def on_device(self, batch: tuple, training: bool) -> tuple:
        """``uint8`` images → floats in ``[0, 1]`` → batch transforms with the masks (random ones only in
        training) → normalisation; masks → ``int64``. Other inputs pass unchanged."""
        x = batch[0]
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.dtype == torch.uint8):
            return batch
        y = batch[1].long() if len(batch) > 1 else None
        x, y = apply_seg_batch_tfms(self.batch_tfms, x.float().div_(255), y, training, self.ignore_index)
        if self.normalize is not None:
            x = self.normalize(x)
        return (x,) if y is None else (x, y, *batch[2:])

    def decode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation of a batch for display: float images in ``[0, 1]``."""
        norms = [t for t in self.batch_tfms if isinstance(t, Normalize)] + ([self.normalize] if self.normalize else [])
        for n in reversed(norms):
            x = n.decode(x)
        return x.clamp(0, 1)

    def decode_pred(self, decoded: torch.Tensor, probs: torch.Tensor) -> tuple:
        """``(mask, mask, probs)``: the predicted class map ``[H, W]`` (int64) twice, and ``[C, H, W]``
        probabilities. Class names are ``dls.codes[mask]``."""
        return decoded, decoded, probs

    @classmethod
    def from_datasets(cls, dsets: Datasets, train: Any, valid: Any, batch_tfms: Sequence[Any], bs: int,
                      device: torch.device) -> "SegmentationDataLoaders":
        """The loaders a `DataBlock` with ``(ImageBlock, MaskBlock(codes))`` builds."""
        if dsets.n_inp != 1 or len(dsets.targets) != 1 or not isinstance(dsets.targets[0], MaskBlock):
            raise ValueError("SegmentationDataLoaders takes one image input and one MaskBlock target")
        mask = dsets.targets[0]
        return cls(train, valid, device=device, codes=mask.codes, void_code=mask.void_code,
                   item_tfms=dsets.train.item_tfms, batch_tfms=batch_tfms, bs=bs, label_func=dsets.train.getters[1])

    # --- new items ---------------------------------------------------------------------------------
    def test_dl(self, items: Sequence[Any], with_labels: bool = False, bs: int | None = None) -> Any:
        """A loader over new images (paths, PIL images, arrays or tensors), preprocessed like the validation
        set. ``with_labels=True`` finds each image's mask with the ``label_func`` of the training data."""
        items = image_items(items)
        getters: list[Any] = [None]
        blocks: list[Any] = [ImageBlock()]
        if with_labels:
            if self.label_func is None:
                raise ValueError("with_labels=True needs the image -> mask rule of the training data, which an "
                                 "exported DataLoaders does not keep; build SegmentationDataLoaders for labelled data")
            masks = [_mask_of(self.label_func, Path(o)) for o in items]
            check_masks_exist(items, masks)
            getters.append(Lookup({str(o): m for o, m in zip(items, masks)}))
            blocks.append(MaskBlock(self.codes, self.void_code))
        ds = BlockDataset(items, getters, blocks, self.item_tfms, training=False,
                          step_names=["get_x", "get_y"][: len(blocks)])
        return DeviceLoader(make_loader(ds, bs or 2 * self.bs, shuffle=False, collate_fn=collate_skipping, device=self.device),
                            self, training=False)  # iterated: batches as the model sees them (fastai's)

    # --- display -----------------------------------------------------------------------------------
    def show_batch(self, max_n: int = 6, split: int = 0, alpha: float = 0.5, ncols: int = 3,
                   figsize: tuple[float, float] | None = None):
        """Images of one batch (augmented when ``split=0``) with their masks overlaid, one colour per code
        and a legend; returns the figure."""
        from .show import show_segmentation
        x, y = self.one_batch(split)[:2]
        n = min(max_n, len(x))
        return show_segmentation(self.decode_images(x[:n]), [y[:n]], self.codes, self.void_code, alpha=alpha,
                                 ncols=ncols, figsize=figsize)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["void code"] = "-" if self.void_code is None else (
            f"{self.void_code} ({self.codes[self.void_code]})" if self.void_code < len(self.codes) else self.void_code)
        out["item_tfms"] = ", ".join(map(repr, self.item_tfms)) or "-"
        out["batch_tfms"] = ", ".join(map(repr, self.batch_tfms + ([self.normalize] if self.normalize else []))) or "-"
        return out

    # --- export ------------------------------------------------------------------------------------
    def onnx_spec(self) -> Any:
        """The ONNX graph's input (``uint8`` images at the training size); see `learnkit.core.onnx`."""
        from ..onnx_spec import image_onnx_spec
        return image_onnx_spec(self)

    def export_config(self) -> dict:
        det = validation_tfms(self.batch_tfms)  # what runs outside training (presizing → BatchResize)
        for t in self.item_tfms + det:
            if not hasattr(t, "export_config"):
                raise TypeError(f"transform {t!r} cannot be exported (it has no export_config); use learnkit's "
                                "Resize/RandomResizedCrop/Normalize")
        return {"codes": list(self.codes), "void_code": self.void_code,
                "item_tfms": [t.export_config() for t in self.item_tfms],
                "batch_tfms": [t.export_config() for t in det],
                "normalize": self.normalize.export_config() if self.normalize else None, "bs": self.bs}

    @classmethod
    def from_config(cls, config: dict, device: str | torch.device | None = None) -> "SegmentationDataLoaders":
        norm = config.get("normalize")
        return cls(None, None, device=device, codes=config["codes"], void_code=config.get("void_code"),
                   item_tfms=[transform_from_config(c) for c in config.get("item_tfms", [])],
                   batch_tfms=[transform_from_config(c) for c in config.get("batch_tfms", [])],
                   normalize=transform_from_config(norm) if norm else None, bs=int(config.get("bs", 8)))

    # --- factories ---------------------------------------------------------------------------------
    @classmethod
    def from_label_func(cls, path: str | Path, fnames: Sequence[str | Path], label_func: Callable[[Path], Any],
                        valid_pct: float = 0.2, seed: int | None = 42,
                        codes: Sequence[str] | str | Path | None = None, void_code: int | str | None = None,
                        splitter: Callable[[list[Path]], tuple[list[int], list[int]]] | None = None,
                        item_tfms: Any = None, batch_tfms: Any = None, bs: int = 8, val_bs: int | None = None,
                        shuffle: bool = True, device: str | torch.device | None = None, cache: bool | None = None,
                        num_workers: int | None = None) -> "SegmentationDataLoaders":
        """Mask of image ``o`` = ``label_func(o)`` (a ``Path``); a random ``valid_pct`` split (``seed``), or
        ``splitter(files) -> (train_idx, valid_idx)`` (e.g. ``FuncSplitter(lambda o: o.parent.name == 'val')``).

        ``codes``: class names (mask value ``i`` is ``codes[i]``), a ``codes.txt`` path, or ``None`` to read
        ``path/codes.txt``. ``void_code``: a class name or mask value ignored by the loss and metrics.
        ``cache=True``: keep the decoded, presized pairs in a memory-mapped file the loader workers share.
        """
        path = expand_path(path)
        images = [Path(f) for f in fnames]
        if not images:
            raise ValueError(f"no image files given (fnames is empty); e.g. fnames=get_image_files({str(path)!r})")
        masks = [_mask_of(label_func, p) for p in images]
        split = (splitter or RandomSplitter(valid_pct, seed))(images)
        return cls._build(images, masks, split, path, codes, void_code, item_tfms, batch_tfms, bs, val_bs, shuffle,
                          device, cache, num_workers, seed, label_func,
                          allow_empty_valid=splitter is None and valid_pct == 0)

    @classmethod
    def from_folders(cls, path: str | Path, images: str = "train", masks: str = "trainannot",
                     valid_images: str | None = "val", valid_masks: str | None = "valannot",
                     codes: Sequence[str] | str | Path | None = None, void_code: int | str | None = None,
                     valid_pct: float = 0.2, seed: int | None = 42, item_tfms: Any = None, batch_tfms: Any = None,
                     bs: int = 8, val_bs: int | None = None, shuffle: bool = True,
                     device: str | torch.device | None = None, cache: bool | None = None,
                     num_workers: int | None = None) -> "SegmentationDataLoaders":
        """Images in ``path/images``, their masks under the same file names in ``path/masks``; validation
        pairs in ``path/valid_images`` and ``path/valid_masks`` (SegNet's CamVid layout). With
        ``valid_images=None`` a random ``valid_pct`` of the training pairs is the validation set."""
        path = expand_path(path)
        for name in [images, masks] + ([valid_images, valid_masks] if valid_images is not None else []):
            if name is None or not (path / name).is_dir():
                raise FileNotFoundError(f"folder {path / str(name)} does not exist; the folders of {path} are "
                                        f"{sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else '(none)'}")
        labeller = FolderMaskLabeller(path, {images: masks, **({valid_images: valid_masks} if valid_images else {})})
        files = get_image_files(path / images)
        if not files:
            raise ValueError(f"no image files in {path / images}")
        if valid_images is not None:
            valid_files = get_image_files(path / valid_images)
            if not valid_files:
                raise ValueError(f"no image files in {path / valid_images}")
            split = (list(range(len(files))), list(range(len(files), len(files) + len(valid_files))))
            files += valid_files
        else:
            split = RandomSplitter(valid_pct, seed)(files)
        return cls._build(files, [labeller(f) for f in files], split, path, codes, void_code, item_tfms, batch_tfms,
                          bs, val_bs, shuffle, device, cache, num_workers, seed, labeller,
                          allow_empty_valid=valid_images is None and valid_pct == 0)

    # --- the one place that builds the loaders: a DataBlock ------------------------------------------
    @classmethod
    def _build(cls, images: list[Path], masks: list[Path], split: tuple[list[int], list[int]], path: Path,
               codes: Any, void_code: Any, item_tfms: Any, batch_tfms: Any, bs: int, val_bs: int | None,
               shuffle: bool, device: Any, cache: bool | None, num_workers: int | None, seed: int | None,
               label_func: Callable[[Path], Any] | None, allow_empty_valid: bool = False) -> "SegmentationDataLoaders":
        codes = _codes_from(codes, path)
        train_idx, valid_idx = split
        check_split(train_idx, valid_idx, allow_empty_valid=allow_empty_valid, what="images")
        check_masks_exist(images, masks)
        order = list(train_idx) + list(valid_idx)
        items = [images[i] for i in order]
        dblock = DataBlock(blocks=(ImageBlock(), MaskBlock(codes, void_code)),
                           get_y=Lookup({str(images[i]): masks[i] for i in order}),
                           splitter=IndexSplitter(range(len(train_idx), len(order))),
                           item_tfms=item_tfms, batch_tfms=batch_tfms)
        dls = dblock.dataloaders(items, bs=bs, val_bs=val_bs, shuffle=shuffle, drop_last=False,
                                 num_workers=num_workers, seed=seed, device=device, cache=presized_cache(cache))
        dls.label_func = label_func
        return dls
