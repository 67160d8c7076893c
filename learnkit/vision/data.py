"""`ImageDataLoaders`: image classification data from folders, file names, data frames or lists.

Every factory takes the same options: ``valid_pct``/``seed`` (the automatic split: 20 %, seed 42),
``item_tfms`` (e.g. ``Resize(224)``), ``batch_tfms`` (e.g. ``aug_transforms()``), ``bs``, ``on_error``
(``'raise'``: a file that cannot be read or labelled raises an error naming it; ``'skip'``: it is left out
with a warning, and listed in ``dls.skipped``), ``cache`` (keep the decoded, presized images in memory;
``None``: when they fit in 2 GiB) and ``device``. Labels may be any hashable values (strings, ints,
bools); a list of labels per image (or ``label_delim``) makes a multi-label task. Data folders are only read.

>>> import tempfile, torchvision
>>> d = Path(tempfile.mkdtemp())
>>> for name in ["cat_1.png", "cat_2.png", "dog_1.png", "dog_2.png", "dog_3.png"]:
...     _ = torchvision.io.write_png(torch.zeros(3, 8, 8, dtype=torch.uint8), str(d / name))
>>> dls = ImageDataLoaders.from_name_re(d, get_image_files(d), r"^(\\w+)_\\d+", valid_pct=0.4, bs=2, device="cpu")
>>> dls.vocab, dls.one_batch()[0].shape
(['cat', 'dog'], torch.Size([2, 3, 8, 8]))
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..core.data import DataLoaders, make_loader
from ..core.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat
from ..core.registry import register_dls
from ..core.split import ColSplitter, GrandparentSplitter, RandomSplitter, check_split
from .dataset import DEFAULT_CACHE_BYTES, ImageDataset, collate_images, decode_all, split_tfms
from .io import get_image_files, image_items
from .labels import RegexLabeller, make_labels, make_vocab, parent_label, py_value
from .transforms import Normalize, apply_batch_tfms, is_random, transform_from_config

__all__ = ["ImageDataLoaders"]

Items = Sequence[str | Path]


@register_dls
class ImageDataLoaders(DataLoaders):
    """Loaders of ``(uint8 image [B, 3, H, W], target)`` batches; ``on_device`` turns images into normalised
    floats and, in training, applies the random batch transforms.

    Build one with a factory (``from_folder``, ``from_name_func``, ...). Attributes: ``vocab``,
    ``multi_label``, ``item_tfms``, ``batch_tfms``, ``normalize`` (set by `vision_learner` from the model's
    stats unless ``batch_tfms`` has a `Normalize`), ``skipped`` (``(file, reason)`` left out by
    ``on_error='skip'``) and ``loss_func`` (cross-entropy, or BCE for multi-label).
    """

    def __init__(self, train: Any, valid: Any = None, device: str | torch.device | None = None,
                 vocab: Sequence[Any] | None = None, multi_label: bool = False, item_tfms: Sequence[Any] = (),
                 batch_tfms: Sequence[Any] = (), normalize: Normalize | None = None, bs: int = 64,
                 labeller: Callable[[Any], Any] | None = None, skipped: Sequence[tuple[str, str]] = ()):
        super().__init__(train, valid, device=device, n_inp=1, vocab=vocab)
        self.multi_label, self.item_tfms, self.batch_tfms = multi_label, list(item_tfms), list(batch_tfms)
        self.normalize, self.bs, self.labeller, self.skipped = normalize, bs, labeller, list(skipped)
        self.loss_func = BCEWithLogitsLossFlat() if multi_label else CrossEntropyLossFlat()

    # --- the device side ---------------------------------------------------------------------------
    @property
    def has_normalize(self) -> bool:
        return self.normalize is not None or any(isinstance(t, Normalize) for t in self.batch_tfms)

    @property
    def train_deterministic(self) -> bool:
        """Whether a training item is the same every epoch (no random item or batch transforms)."""
        ds = getattr(self.train, "dataset", None)
        item_ok = ds.deterministic if isinstance(ds, ImageDataset) else False
        return item_ok and not any(is_random(t) for t in self.batch_tfms)

    def on_device(self, batch: tuple, training: bool) -> tuple:
        """``uint8`` image batches → float in ``[0, 1]`` → batch transforms (random ones only when
        ``training``) → normalisation. Inputs that are not ``uint8 [B, C, H, W]`` pass unchanged."""
        x = batch[0]
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.dtype == torch.uint8):
            return batch
        return (self.prepare_images(x, training), *batch[1:])

    def prepare_images(self, x: torch.Tensor, training: bool, tfms: Sequence[Any] | None = None) -> torch.Tensor:
        """``uint8 [B, C, H, W]`` → float ``[0, 1]`` → ``tfms`` (default ``batch_tfms``; random ones only when
        ``training``) → ``normalize``, in channels-last layout on CPU/CUDA."""
        x = apply_batch_tfms(self.batch_tfms if tfms is None else tfms, x.float().div_(255), training=training)
        if self.normalize is not None:
            x = self.normalize(x)
        if x.device.type in ("cpu", "cuda"):  # convolutions run about twice as fast in this layout on CPUs
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def decode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation of a batch for display: float images in ``[0, 1]``."""
        norms = [t for t in self.batch_tfms if isinstance(t, Normalize)] + ([self.normalize] if self.normalize else [])
        for n in reversed(norms):
            x = n.decode(x)
        return x.clamp(0, 1)

    def decode_target(self, y: torch.Tensor) -> Any:
        if self.multi_label:
            return [v for v, f in zip(self.vocab, (y > 0.5).tolist()) if f]
        return self.vocab[int(y)]

    # --- new items ---------------------------------------------------------------------------------
    def test_dl(self, items: Sequence[Any], with_labels: bool = False, bs: int | None = None) -> Any:
        """A loader over new images (paths, PIL images, arrays or tensors), preprocessed like the validation
        set. ``with_labels=True`` labels path items the way the training data was labelled."""
        items = image_items(items)
        targets = None
        if with_labels:
            if self.labeller is None:
                raise ValueError("with_labels=True needs the labelling rule of the training data, which an exported "
                                 "DataLoaders does not keep; label the items yourself")
            labels, _ = make_labels(items, self.labeller, "raise")
            targets = self._encode(labels)
        ds = ImageDataset(items, targets, self.item_tfms, training=False)
        return make_loader(ds, bs or 2 * self.bs, shuffle=False, collate_fn=collate_images, device=self.device)

    def _encode(self, labels: Sequence[Any]) -> torch.Tensor:
        index = {v: i for i, v in enumerate(self.vocab)}
        if self.multi_label:
            out = torch.zeros(len(labels), len(self.vocab))
            for r, labs in enumerate(labels):
                for lab in labs:
                    if lab not in index:
                        raise ValueError(f"label {lab!r} is not in the vocab {self.vocab[:10]}")
                    out[r, index[lab]] = 1.0
            return out
        bad = [lab for lab in labels if lab not in index]
        if bad:
            raise ValueError(f"label {bad[0]!r} is not in the vocab {self.vocab[:10]}")
        return torch.tensor([index[lab] for lab in labels], dtype=torch.long)

    # --- display -----------------------------------------------------------------------------------
    def show_batch(self, max_n: int = 9, split: int = 0, nrows: int | None = None, ncols: int | None = None,
                   figsize: tuple[float, float] | None = None):
        """Images of one batch (augmented when ``split=0``) titled with their labels; returns the figure."""
        from .show import show_images
        x, y = self.one_batch(split)[:2]
        n = min(max_n, len(x))
        return show_images(self.decode_images(x[:n]), [str(self.decode_target(t)) for t in y[:n]],
                           nrows=nrows, ncols=ncols, figsize=figsize)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["item_tfms"] = ", ".join(map(repr, self.item_tfms)) or "-"
        out["batch_tfms"] = ", ".join(map(repr, self.batch_tfms + ([self.normalize] if self.normalize else []))) or "-"
        if self.skipped:
            out["skipped files"] = len(self.skipped)
        return out

    # --- export ------------------------------------------------------------------------------------
    def onnx_spec(self) -> Any:
        """The ONNX graph's input (``uint8`` images at the training size); see `learnkit.core.onnx`."""
        from .onnx_spec import image_onnx_spec
        return image_onnx_spec(self)

    def export_config(self) -> dict:
        det = [t for t in self.batch_tfms if not is_random(t)]
        for t in self.item_tfms + det:
            if not hasattr(t, "export_config"):
                raise TypeError(f"transform {t!r} cannot be exported (it has no export_config); use learnkit's "
                                "Resize/RandomResizedCrop/Normalize or register your own")
        return {"vocab": [py_value(v) for v in self.vocab], "multi_label": self.multi_label,
                "item_tfms": [t.export_config() for t in self.item_tfms],
                "batch_tfms": [t.export_config() for t in det],
                "normalize": self.normalize.export_config() if self.normalize else None, "bs": self.bs}

    @classmethod
    def from_config(cls, config: dict, device: str | torch.device | None = None) -> "ImageDataLoaders":
        norm = config.get("normalize")
        return cls(None, None, device=device, vocab=config["vocab"], multi_label=config["multi_label"],
                   item_tfms=[transform_from_config(c) for c in config["item_tfms"]],
                   batch_tfms=[transform_from_config(c) for c in config["batch_tfms"]],
                   normalize=transform_from_config(norm) if norm else None, bs=int(config.get("bs", 64)))

    # --- factories ---------------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid", valid_pct: float | None = None,
                    seed: int | None = 42, vocab: Sequence[Any] | None = None, item_tfms: Sequence[Any] | Any = None,
                    batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                    shuffle: bool = True, device: str | torch.device | None = None, on_error: str = "raise",
                    cache: bool | None = None, num_workers: int = 0) -> "ImageDataLoaders":
        """Label = the parent folder. With ``path/train`` and ``path/valid`` folders (and no ``valid_pct``)
        they are the split; otherwise a random ``valid_pct`` (default 20 %) of all images is."""
        path = Path(path)
        use_folders = valid_pct is None and (path / train).is_dir() and (path / valid).is_dir()
        files = get_image_files(path, folders=[train, valid] if use_folders else None)
        splitter = GrandparentSplitter(train, valid) if use_folders else RandomSplitter(valid_pct or 0.2, seed)
        return cls._build(files, parent_label, splitter(files), path, vocab, item_tfms, batch_tfms, bs, val_bs,
                          shuffle, device, on_error, cache, num_workers, seed, allow_empty_valid=valid_pct == 0)

    @classmethod
    def from_path_func(cls, path: str | Path, fnames: Items, label_func: Callable[[Path], Any], valid_pct: float = 0.2,
                       seed: int | None = 42, vocab: Sequence[Any] | None = None, item_tfms: Sequence[Any] | Any = None,
                       batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                       shuffle: bool = True, device: str | torch.device | None = None, on_error: str = "raise",
                       cache: bool | None = None, num_workers: int = 0) -> "ImageDataLoaders":
        """Label = ``label_func(path_of_the_file)``; a random ``valid_pct`` split."""
        files = [Path(f) for f in fnames]
        return cls._build(files, lambda p: label_func(Path(p)), RandomSplitter(valid_pct, seed)(files), Path(path),
                          vocab, item_tfms, batch_tfms, bs, val_bs, shuffle, device, on_error, cache, num_workers, seed,
                          allow_empty_valid=valid_pct == 0)

    @classmethod
    def from_name_func(cls, path: str | Path, fnames: Items, label_func: Callable[[str], Any], valid_pct: float = 0.2,
                       seed: int | None = 42, vocab: Sequence[Any] | None = None, item_tfms: Sequence[Any] | Any = None,
                       batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                       shuffle: bool = True, device: str | torch.device | None = None, on_error: str = "raise",
                       cache: bool | None = None, num_workers: int = 0) -> "ImageDataLoaders":
        """Label = ``label_func(file_name)`` (the name as a string, e.g. ``'Bengal_12.jpg'``)."""
        return cls.from_path_func(path, fnames, lambda p: label_func(Path(p).name), valid_pct, seed, vocab, item_tfms,
                                  batch_tfms, bs, val_bs, shuffle, device, on_error, cache, num_workers)

    @classmethod
    def from_name_re(cls, path: str | Path, fnames: Items, pat: str, valid_pct: float = 0.2, seed: int | None = 42,
                     vocab: Sequence[Any] | None = None, item_tfms: Sequence[Any] | Any = None,
                     batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                     shuffle: bool = True, device: str | torch.device | None = None, on_error: str = "raise",
                     cache: bool | None = None, num_workers: int = 0) -> "ImageDataLoaders":
        """Label = the first group of the regular expression ``pat`` searched in the file name."""
        return cls.from_path_func(path, fnames, RegexLabeller(pat, match_name=True), valid_pct, seed, vocab, item_tfms,
                                  batch_tfms, bs, val_bs, shuffle, device, on_error, cache, num_workers)

    @classmethod
    def from_path_re(cls, path: str | Path, fnames: Items, pat: str, valid_pct: float = 0.2, seed: int | None = 42,
                     vocab: Sequence[Any] | None = None, item_tfms: Sequence[Any] | Any = None,
                     batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                     shuffle: bool = True, device: str | torch.device | None = None, on_error: str = "raise",
                     cache: bool | None = None, num_workers: int = 0) -> "ImageDataLoaders":
        """Label = the first group of ``pat`` searched in the full path (``/`` separators)."""
        return cls.from_path_func(path, fnames, RegexLabeller(pat, match_name=False), valid_pct, seed, vocab,
                                  item_tfms, batch_tfms, bs, val_bs, shuffle, device, on_error, cache, num_workers)

    @classmethod
    def from_lists(cls, path: str | Path, fnames: Items, labels: Sequence[Any], valid_pct: float = 0.2,
                   seed: int | None = 42, vocab: Sequence[Any] | None = None, item_tfms: Sequence[Any] | Any = None,
                   batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                   shuffle: bool = True, device: str | torch.device | None = None, on_error: str = "raise",
                   cache: bool | None = None, num_workers: int = 0) -> "ImageDataLoaders":
        """One label per file (a list of labels per file for multi-label). Relative names are under ``path``."""
        files = [Path(f) if Path(f).is_absolute() else Path(path) / f for f in fnames]
        if len(files) != len(labels):
            raise ValueError(f"got {len(files)} file names but {len(labels)} labels")
        table = {str(f): py_value(lab) for f, lab in zip(files, labels)}
        return cls._build(files, lambda p: table[str(p)], RandomSplitter(valid_pct, seed)(files), Path(path), vocab,
                          item_tfms, batch_tfms, bs, val_bs, shuffle, device, on_error, cache, num_workers, seed,
                          allow_empty_valid=valid_pct == 0)

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | Path = ".", valid_pct: float = 0.2, seed: int | None = 42,
                fn_col: int | str = 0, folder: str | None = None, suff: str = "", label_col: int | str = 1,
                label_delim: str | None = None, valid_col: str | None = None, vocab: Sequence[Any] | None = None,
                item_tfms: Sequence[Any] | Any = None, batch_tfms: Sequence[Any] | Any = None, bs: int = 64,
                val_bs: int | None = None, shuffle: bool = True, device: str | torch.device | None = None,
                on_error: str = "raise", cache: bool | None = None, num_workers: int = 0) -> "ImageDataLoaders":
        """Files in column ``fn_col`` (relative to ``path/folder``, plus ``suff``), labels in ``label_col``
        (split on ``label_delim`` for multi-label), split by the boolean ``valid_col`` or at random."""
        def col(c: int | str) -> pd.Series:
            if isinstance(c, int) and not isinstance(c, bool):
                if not -df.shape[1] <= c < df.shape[1]:
                    raise IndexError(f"column index {c} is out of range; the columns are {list(df.columns)}")
                return df.iloc[:, c]
            if c not in df.columns:
                raise KeyError(f"column {c!r} not found; the columns are {list(df.columns)}")
            return df[c]
        if len(df) == 0:
            raise ValueError("the data frame has no rows")
        root = Path(path) / folder if folder else Path(path)
        files = [root / f"{name}{suff}" for name in col(fn_col).astype(str)]
        labels = list(col(label_col))
        if label_delim is not None:
            labels = [[] if (isinstance(v, float) and v != v) or str(v).strip() == ""
                      else [t for t in str(v).split(label_delim) if t] for v in labels]
        split = ColSplitter(valid_col)(df) if valid_col is not None else RandomSplitter(valid_pct, seed)(files)
        table = {str(f): py_value(lab) for f, lab in zip(files, labels)}
        return cls._build(files, lambda p: table[str(p)], split, Path(path), vocab, item_tfms, batch_tfms, bs, val_bs,
                          shuffle, device, on_error, cache, num_workers, seed,
                          allow_empty_valid=valid_col is None and valid_pct == 0)

    @classmethod
    def from_csv(cls, path: str | Path, csv_fname: str | Path = "labels.csv", header: int | str | None = "infer",
                 delimiter: str | None = None, valid_pct: float = 0.2, seed: int | None = 42, fn_col: int | str = 0,
                 folder: str | None = None, suff: str = "", label_col: int | str = 1, label_delim: str | None = None,
                 valid_col: str | None = None, vocab: Sequence[Any] | None = None, item_tfms: Sequence[Any] | Any = None,
                 batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None, shuffle: bool = True,
                 device: str | torch.device | None = None, on_error: str = "raise", cache: bool | None = None,
                 num_workers: int = 0) -> "ImageDataLoaders":
        """`from_df` on the CSV file ``path/csv_fname``."""
        csv = Path(path) / csv_fname
        if not csv.is_file():
            raise FileNotFoundError(f"CSV file {csv} not found")
        df = pd.read_csv(csv, header=header, sep="," if delimiter is None else delimiter)
        return cls.from_df(df, path, valid_pct, seed, fn_col, folder, suff, label_col, label_delim, valid_col, vocab,
                           item_tfms, batch_tfms, bs, val_bs, shuffle, device, on_error, cache, num_workers)

    # --- the one place that builds the loaders -------------------------------------------------------
    @classmethod
    def _build(cls, files: list[Path], labeller: Callable[[Any], Any], split: tuple[list[int], list[int]], path: Path,
               vocab: Sequence[Any] | None, item_tfms: Any, batch_tfms: Any, bs: int, val_bs: int | None,
               shuffle: bool, device: Any, on_error: str, cache: bool | None, num_workers: int,
               seed: int | None, allow_empty_valid: bool = False) -> "ImageDataLoaders":
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not files:
            raise ValueError(f"no image files found in {path}; check the path and that the images have an image "
                             "suffix (.jpg, .png, ...)")
        item_tfms, batch_tfms = _listify(item_tfms), _listify(batch_tfms)
        train_idx, valid_idx = split
        if not train_idx and not valid_idx:
            raise ValueError(f"none of the {len(files)} images under {path} is in the training or validation set; "
                             "check the train/valid folder names")
        skipped: list[tuple[str, str]] = []
        keep = sorted(set(train_idx) | set(valid_idx))
        labels, fails = make_labels([files[i] for i in keep], labeller, on_error)
        labels = dict(zip(keep, labels))
        bad = {keep[j] for j, _ in fails}
        skipped += [(str(files[keep[j]]), msg) for j, msg in fails]
        images: dict[int, torch.Tensor | None] = {}
        for idx, training in ((train_idx, True), (valid_idx, False)):
            idx = [i for i in idx if i not in bad]
            fixed, _ = split_tfms(item_tfms, training)
            keep_imgs = _want_cache(cache, files, idx, fixed)
            imgs, fails = decode_all([files[i] for i in idx], fixed, on_error, keep=keep_imgs)
            bad |= {idx[j] for j, _ in fails}
            skipped += [(str(files[idx[j]]), msg) for j, msg in fails]
            images.update(zip(idx, imgs))
        if skipped:
            warnings.warn(f"skipped {len(skipped)} of {len(keep)} images that could not be read or labelled "
                          f"(on_error='skip'), e.g. {skipped[0][1]}. The full list is in dls.skipped.", stacklevel=3)
        train_idx = [i for i in train_idx if i not in bad]
        valid_idx = [i for i in valid_idx if i not in bad]
        if not train_idx and not valid_idx:
            raise ValueError(f"every image under {path} was skipped; the first problem: {skipped[0][1]}")
        multi = any(isinstance(labels[i], (list, tuple, set)) for i in train_idx + valid_idx)
        example = files[(train_idx + valid_idx)[0]]
        vocab = make_vocab([labels[i] for i in train_idx + valid_idx], vocab, multi, example)
        check_split(train_idx, valid_idx, None if multi else [labels.get(i) for i in range(len(files))],
                    allow_empty_valid=allow_empty_valid, what="images")
        dls = cls(None, None, device=device, vocab=vocab, multi_label=multi, item_tfms=item_tfms,
                  batch_tfms=batch_tfms, bs=bs, labeller=labeller, skipped=skipped)

        def dataset(idx: list[int], training: bool) -> ImageDataset:
            targets = dls._encode([labels[i] for i in idx])
            cached = [images[i] for i in idx]
            return ImageDataset([files[i] for i in idx], targets, item_tfms, training,
                                images=cached if all(c is not None for c in cached) else None)
        # like fastai, the shuffled training loader drops its last partial batch (a batch of one breaks batch-norm)
        dls.train = make_loader(dataset(train_idx, True), bs, shuffle=shuffle, seed=seed, collate_fn=collate_images,
                                drop_last=shuffle and len(train_idx) > bs, num_workers=num_workers, device=dls.device)
        if valid_idx:
            dls.valid = make_loader(dataset(valid_idx, False), val_bs or 2 * bs, shuffle=False,
                                    collate_fn=collate_images, num_workers=num_workers, device=dls.device)
        return dls


def _listify(o: Any) -> list:
    if o is None:
        return []
    return list(o) if isinstance(o, (list, tuple)) else [o]


def _want_cache(cache: bool | None, files: list[Path], idx: list[int], fixed: list[Any]) -> bool:
    """Keep decoded images in memory? ``None``: when the first image's size times their count is ≤ 2 GiB."""
    if cache is not None or not idx:
        return bool(cache) if cache is not None else True
    from .io import load_image
    from .transforms import apply_item_tfms
    try:
        first = apply_item_tfms(fixed, load_image(files[idx[0]]), training=False)
    except OSError:
        return True  # the real pass reports (or skips) the bad file
    return first.numel() * len(idx) <= DEFAULT_CACHE_BYTES
