"""The factories of `learnkit.vision.ImageDataLoaders` (fastai's ``from_*`` constructors).

Each takes its required arguments positionally, as fastai's lessons pass them — ``from_name_func(path, fnames,
label_func)``, ``from_folder(path, train, valid)``, ``from_df(df, path)``, ``from_csv(path, csv_fname)``,
``from_dsets(train_ds, valid_ds)`` — and every option by keyword only (``valid_pct``, ``seed``, ``item_tfms``,
``batch_tfms``, ``bs``, ... see `learnkit.vision.data`), so a misplaced argument is an error, not a wrong split.
The file factories take fastai's ``img_cls``: ``img_cls=PILImageBW`` gives 1-channel (greyscale) batches.

>>> import tempfile; from PIL import Image
>>> from learnkit.vision import ImageDataLoaders, PILImageBW
>>> d = Path(tempfile.mkdtemp())
>>> for name in [f"{pet}_{i}.png" for pet in ("cat", "dog") for i in range(4)]:
...     Image.new("RGB", (8, 8)).save(d / name)
>>> dls = ImageDataLoaders.from_name_func(d, sorted(d.iterdir()), lambda n: n[:3], valid_pct=0.25, device="cpu")
>>> dls.vocab
['cat', 'dog']
>>> grey = ImageDataLoaders.from_name_func(d, sorted(d.iterdir()), lambda n: n[:3], valid_pct=0.25,
...                                        img_cls=PILImageBW, device="cpu")
>>> grey.one_batch()[0].shape                            # 6 training images, 1 channel
torch.Size([6, 1, 8, 8])
>>> ImageDataLoaders.from_name_func(d, sorted(d.iterdir()), lambda n: n[:3], 0.25)
Traceback (most recent call last):
TypeError: ImageFactories.from_name_func() takes 4 positional arguments but 5 were given
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from ..core.block import CategoryBlock, MultiCategoryBlock
from ..core.cache import presized_cache
from ..core.datablock import DataBlock
from ..core.items import (DatasetField, DatasetLabel, Lookup, RegexLabeller, make_labels, make_vocab, parent_label,
                          py_value)
from ..core.split import ColSplitter, GrandparentSplitter, IndexSplitter, RandomSplitter, check_split
from .blocks import ImageBlock, PILImage
from .io import get_image_files
from ..core.paths import expand_path

if TYPE_CHECKING:  # pragma: no cover
    from .data import ImageDataLoaders

__all__ = ["ImageFactories"]

Items = Sequence[str | Path]


class ImageFactories:
    """The ``from_*`` classmethods of `ImageDataLoaders` (a base class of it; not used on its own)."""

    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid", *,
                    valid_pct: float | None = None, seed: int | None = 42, vocab: Sequence[Any] | None = None,
                    img_cls: type = PILImage,
                    item_tfms: Sequence[Any] | Any = None, batch_tfms: Sequence[Any] | Any = None, bs: int = 64,
                    val_bs: int | None = None, shuffle: bool = True, device: str | torch.device | None = None,
                    on_error: str = "raise", cache: bool | None = None, num_workers: int | None = None) -> ImageDataLoaders:
        """Label = the parent folder. With ``path/train`` and ``path/valid`` folders (and no ``valid_pct``)
        they are the split; otherwise a random ``valid_pct`` (default 20 %) of all images is."""
        path = expand_path(path)
        use_folders = valid_pct is None and (path / train).is_dir() and (path / valid).is_dir()
        files = get_image_files(path, folders=[train, valid] if use_folders else None)
        splitter = GrandparentSplitter(train, valid) if use_folders else RandomSplitter(valid_pct or 0.2, seed)
        return cls._build(files, parent_label, splitter(files), path, vocab=vocab, img_cls=img_cls, item_tfms=item_tfms,
                          batch_tfms=batch_tfms, bs=bs, val_bs=val_bs, shuffle=shuffle, device=device,
                          on_error=on_error, cache=cache, num_workers=num_workers, seed=seed,
                          allow_empty_valid=valid_pct == 0)

    @classmethod
    def from_path_func(cls, path: str | Path, fnames: Items, label_func: Callable[[Path], Any], *,
                       valid_pct: float = 0.2, seed: int | None = 42, vocab: Sequence[Any] | None = None,
                       img_cls: type = PILImage,
                       item_tfms: Sequence[Any] | Any = None, batch_tfms: Sequence[Any] | Any = None, bs: int = 64,
                       val_bs: int | None = None, shuffle: bool = True, device: str | torch.device | None = None,
                       on_error: str = "raise", cache: bool | None = None, num_workers: int | None = None) -> ImageDataLoaders:
        """Label = ``label_func(path_of_the_file)``; a random ``valid_pct`` split."""
        files = [Path(f) for f in fnames]
        return cls._build(files, lambda p: label_func(Path(p)), RandomSplitter(valid_pct, seed)(files), Path(path),
                          vocab=vocab, img_cls=img_cls, item_tfms=item_tfms, batch_tfms=batch_tfms,
                          bs=bs, val_bs=val_bs,
                          shuffle=shuffle, device=device, on_error=on_error, cache=cache, num_workers=num_workers,
                          seed=seed, allow_empty_valid=valid_pct == 0)

    @classmethod
    def from_name_func(cls, path: str | Path, fnames: Items, label_func: Callable[[str], Any], *,
                       valid_pct: float = 0.2, seed: int | None = 42, vocab: Sequence[Any] | None = None,
                       img_cls: type = PILImage,
                       item_tfms: Sequence[Any] | Any = None, batch_tfms: Sequence[Any] | Any = None, bs: int = 64,
                       val_bs: int | None = None, shuffle: bool = True, device: str | torch.device | None = None,
                       on_error: str = "raise", cache: bool | None = None, num_workers: int | None = None) -> ImageDataLoaders:
        """Label = ``label_func(file_name)`` (the name as a string, e.g. ``'Bengal_12.jpg'``)."""
        return cls.from_path_func(path, fnames, lambda p: label_func(Path(p).name), valid_pct=valid_pct, seed=seed,
                                  vocab=vocab, img_cls=img_cls, item_tfms=item_tfms, batch_tfms=batch_tfms,
                                  bs=bs, val_bs=val_bs,
                                  shuffle=shuffle, device=device, on_error=on_error, cache=cache,
                                  num_workers=num_workers)

    @classmethod
    def from_name_re(cls, path: str | Path, fnames: Items, pat: str, *, valid_pct: float = 0.2, seed: int | None = 42,
                     vocab: Sequence[Any] | None = None,
                     img_cls: type = PILImage, item_tfms: Sequence[Any] | Any = None,
                     batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                     shuffle: bool = True, device: str | torch.device | None = None, on_error: str = "raise",
                     cache: bool | None = None, num_workers: int | None = None) -> ImageDataLoaders:
        """Label = the first group of the regular expression ``pat`` searched in the file name."""
        return cls.from_path_func(path, fnames, RegexLabeller(pat, match_name=True), valid_pct=valid_pct, seed=seed,
                                  vocab=vocab, img_cls=img_cls, item_tfms=item_tfms, batch_tfms=batch_tfms,
                                  bs=bs, val_bs=val_bs,
                                  shuffle=shuffle, device=device, on_error=on_error, cache=cache,
                                  num_workers=num_workers)

    @classmethod
    def from_path_re(cls, path: str | Path, fnames: Items, pat: str, *, valid_pct: float = 0.2, seed: int | None = 42,
                     vocab: Sequence[Any] | None = None,
                     img_cls: type = PILImage, item_tfms: Sequence[Any] | Any = None,
                     batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                     shuffle: bool = True, device: str | torch.device | None = None, on_error: str = "raise",
                     cache: bool | None = None, num_workers: int | None = None) -> ImageDataLoaders:
        """Label = the first group of ``pat`` searched in the full path (``/`` separators)."""
        return cls.from_path_func(path, fnames, RegexLabeller(pat, match_name=False), valid_pct=valid_pct, seed=seed,
                                  vocab=vocab, img_cls=img_cls, item_tfms=item_tfms, batch_tfms=batch_tfms,
                                  bs=bs, val_bs=val_bs,
                                  shuffle=shuffle, device=device, on_error=on_error, cache=cache,
                                  num_workers=num_workers)

    @classmethod
    def from_lists(cls, path: str | Path, fnames: Items, labels: Sequence[Any], *, valid_pct: float = 0.2,
                   seed: int | None = 42, vocab: Sequence[Any] | None = None,
                   img_cls: type = PILImage, item_tfms: Sequence[Any] | Any = None,
                   batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                   shuffle: bool = True, device: str | torch.device | None = None, on_error: str = "raise",
                   cache: bool | None = None, num_workers: int | None = None) -> ImageDataLoaders:
        """One label per file (a list of labels per file for multi-label). Relative names are under ``path``."""
        files = [expand_path(f) if expand_path(f).is_absolute() else expand_path(path) / f for f in fnames]
        if len(files) != len(labels):
            raise ValueError(f"got {len(files)} file names but {len(labels)} labels")
        table = {str(f): py_value(lab) for f, lab in zip(files, labels)}
        return cls._build(files, lambda p: table[str(p)], RandomSplitter(valid_pct, seed)(files), Path(path),
                          vocab=vocab, img_cls=img_cls, item_tfms=item_tfms, batch_tfms=batch_tfms,
                          bs=bs, val_bs=val_bs,
                          shuffle=shuffle, device=device, on_error=on_error, cache=cache, num_workers=num_workers,
                          seed=seed, allow_empty_valid=valid_pct == 0)

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | Path = ".", *, valid_pct: float = 0.2, seed: int | None = 42,
                fn_col: int | str = 0, folder: str | None = None, suff: str = "", label_col: int | str = 1,
                label_delim: str | None = None, valid_col: str | None = None, vocab: Sequence[Any] | None = None,
                img_cls: type = PILImage,
                item_tfms: Sequence[Any] | Any = None, batch_tfms: Sequence[Any] | Any = None, bs: int = 64,
                val_bs: int | None = None, shuffle: bool = True, device: str | torch.device | None = None,
                on_error: str = "raise", cache: bool | None = None, num_workers: int | None = None) -> ImageDataLoaders:
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
        root = expand_path(path) / folder if folder else expand_path(path)
        files = [root / f"{name}{suff}" for name in col(fn_col).astype(str)]
        labels = list(col(label_col))
        if label_delim is not None:
            labels = [[] if (isinstance(v, float) and v != v) or str(v).strip() == ""
                      else [t for t in str(v).split(label_delim) if t] for v in labels]
        split = ColSplitter(valid_col)(df) if valid_col is not None else RandomSplitter(valid_pct, seed)(files)
        table = {str(f): py_value(lab) for f, lab in zip(files, labels)}
        return cls._build(files, lambda p: table[str(p)], split, Path(path), vocab=vocab, img_cls=img_cls,
                          item_tfms=item_tfms,
                          batch_tfms=batch_tfms, bs=bs, val_bs=val_bs, shuffle=shuffle, device=device,
                          on_error=on_error, cache=cache, num_workers=num_workers, seed=seed,
                          allow_empty_valid=valid_col is None and valid_pct == 0)

    @classmethod
    def from_csv(cls, path: str | Path, csv_fname: str | Path = "labels.csv", *, header: int | str | None = "infer",
                 delimiter: str | None = None, valid_pct: float = 0.2, seed: int | None = 42, fn_col: int | str = 0,
                 folder: str | None = None, suff: str = "", label_col: int | str = 1, label_delim: str | None = None,
                 valid_col: str | None = None, vocab: Sequence[Any] | None = None,
                 img_cls: type = PILImage,
                 item_tfms: Sequence[Any] | Any = None, batch_tfms: Sequence[Any] | Any = None, bs: int = 64,
                 val_bs: int | None = None, shuffle: bool = True, device: str | torch.device | None = None,
                 on_error: str = "raise", cache: bool | None = None, num_workers: int | None = None) -> ImageDataLoaders:
        """`from_df` on the CSV file ``path/csv_fname``."""
        csv = expand_path(path) / csv_fname
        if not csv.is_file():
            raise FileNotFoundError(f"CSV file {csv} not found")
        df = pd.read_csv(csv, header=header, sep="," if delimiter is None else delimiter)
        return cls.from_df(df, path, valid_pct=valid_pct, seed=seed, fn_col=fn_col, folder=folder, suff=suff,
                           label_col=label_col, label_delim=label_delim, valid_col=valid_col, vocab=vocab,
                           img_cls=img_cls,
                           item_tfms=item_tfms, batch_tfms=batch_tfms, bs=bs, val_bs=val_bs, shuffle=shuffle,
                           device=device, on_error=on_error, cache=cache, num_workers=num_workers)

    @classmethod
    def from_dsets(cls, train_ds: Any, valid_ds: Any = None, *, item_tfms: Sequence[Any] | Any = None,
                   batch_tfms: Sequence[Any] | Any = None, bs: int = 64, val_bs: int | None = None,
                   shuffle: bool = True, num_workers: int | None = None, seed: int | None = 42,
                   device: str | torch.device | None = None) -> ImageDataLoaders:
        """Image classification loaders over torch datasets of ``(image, class index)`` pairs with a ``classes``
        list, such as torchvision's ``ImageFolder``, ``CIFAR10`` or ``FashionMNIST`` (images: PIL, arrays or
        tensors). The vocab is ``classes``; the labels come from the dataset's ``targets`` when it has them
        (no image is read to label), else from its items. A learner on these loaders predicts on and exports
        like any other `vision_learner`."""
        classes = getattr(train_ds, "classes", None)
        if not isinstance(classes, (list, tuple)) or not classes:
            raise ValueError(f"{type(train_ds).__name__} has no `classes` list; give the dataset one (the class "
                             "names, index i = label i) or build the loaders with a DataBlock")
        dsets = [train_ds] + ([valid_ds] if valid_ds is not None else [])
        refs = [(k, i) for k, ds in enumerate(dsets) for i in range(len(ds))]
        dblock = DataBlock(blocks=(ImageBlock(), CategoryBlock(list(classes))), get_x=DatasetField(dsets, 0),
                           get_y=DatasetLabel(dsets, list(classes)), splitter=IndexSplitter(range(len(train_ds), len(refs))),
                           item_tfms=item_tfms, batch_tfms=batch_tfms)
        return dblock.dataloaders(refs, bs=bs, val_bs=val_bs, shuffle=shuffle, num_workers=num_workers, seed=seed,
                                  device=device)

    @classmethod
    def from_shards(cls, train_urls: str | Sequence[str], valid_urls: str | Sequence[str] | None = None, *,
                    image_key: str = "jpg", label_key: str = "cls", vocab: Sequence[Any] | None = None,
                    n_train: int | None = None, n_valid: int | None = None, steps_per_epoch: int | None = None,
                    item_tfms: Sequence[Any] | Any = None, batch_tfms: Sequence[Any] | Any = None, bs: int = 64,
                    num_workers: int | None = None, shuffle_buffer: int = 1000, seed: int = 42,
                    device: str | torch.device | None = None) -> ImageDataLoaders:
        """Image classification loaders streaming WebDataset tar shards (``<key>.jpg`` + ``<key>.cls``, the class
        index), on the ``webdataset`` package (``pip install "learnkit[shards]"``); see `learnkit.vision.shards`.

        ``train_urls``/``valid_urls``: paths, brace patterns, ``pipe:`` or ``http(s)://`` URLs. ``vocab``: the class
        names (default: ``vocab.json`` beside the first training shard, as ``learnkit shards make`` writes it).
        ``n_train``/``n_valid``: items per epoch (counted from the tar headers for local shards); or
        ``steps_per_epoch``. Training shards are split over ranks and workers; validation is read in order.

        >>> import tempfile; from PIL import Image
        >>> from learnkit.vision.shards import write_image_shards
        >>> d = Path(tempfile.mkdtemp())
        >>> for lab in ("cat", "dog"):
        ...     (d / lab).mkdir()
        ...     for i in range(4): Image.new("RGB", (8, 8)).save(d / lab / f"{i}.jpg")
        >>> _ = write_image_shards(d, d / "wds", per_shard=3)
        >>> dls = ImageDataLoaders.from_shards(str(d / "wds" / "shard-{000000..000002}.tar"), bs=4, num_workers=0,
        ...                                    device="cpu")
        >>> dls.vocab, len(dls.train), dls.one_batch()[0].shape
        (['cat', 'dog'], 2, torch.Size([4, 3, 8, 8]))
        """
        from .shards import image_shards_dataloaders
        return image_shards_dataloaders(cls, train_urls, valid_urls, image_key=image_key, label_key=label_key,
                                        vocab=vocab, n_train=n_train, n_valid=n_valid, steps_per_epoch=steps_per_epoch,
                                        item_tfms=item_tfms, batch_tfms=batch_tfms, bs=bs, num_workers=num_workers,
                                        shuffle_buffer=shuffle_buffer, seed=seed, device=device)

    # --- the one place that builds the loaders: a DataBlock ------------------------------------------
    @classmethod
    def _build(cls, files: list[Path], labeller: Callable[[Any], Any], split: tuple[list[int], list[int]], path: Path,
               *, vocab: Sequence[Any] | None, item_tfms: Any, batch_tfms: Any, bs: int, val_bs: int | None,
               shuffle: bool, device: Any, on_error: str, cache: bool | None, num_workers: int | None,
               seed: int | None, allow_empty_valid: bool = False, img_cls: type = PILImage) -> ImageDataLoaders:
        """Label the files (names only: cheap), pick the target block (a list of labels per file: multi-label)
        and build the loaders with a `DataBlock` over the labelled files; images are decoded lazily."""
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not (isinstance(img_cls, type) and issubclass(img_cls, PILImage)):
            raise TypeError(f"img_cls must be PILImage or PILImageBW (the class of the images: PILImageBW for "
                            f"1-channel greyscale), got {img_cls!r}")
        if not files:
            raise ValueError(f"no image files found in {path}; check the path and that the images have an image "
                             "suffix (.jpg, .png, ...)")
        train_idx, valid_idx = split
        if not train_idx and not valid_idx:
            raise ValueError(f"none of the {len(files)} images under {path} is in the training or validation set; "
                             "check the train/valid folder names")
        keep = sorted(set(train_idx) | set(valid_idx))
        labels, fails = make_labels([files[i] for i in keep], labeller, on_error)
        bad = {keep[j] for j, _ in fails}
        skipped = [(str(files[keep[j]]), msg) for j, msg in fails]
        if skipped:
            warnings.warn(f"skipped {len(skipped)} of {len(keep)} images that could not be labelled "
                          f"(on_error='skip'), e.g. {skipped[0][1]}. The full list is in dls.skipped.", stacklevel=3)
        table = {i: lab for i, lab in zip(keep, labels) if i not in bad}
        train_idx = [i for i in train_idx if i not in bad]
        valid_idx = [i for i in valid_idx if i not in bad]
        if not train_idx and not valid_idx:
            raise ValueError(f"every image under {path} was skipped; the first problem: {skipped[0][1]}")
        multi = any(isinstance(v, (list, tuple, set)) for v in table.values())
        order = train_idx + valid_idx
        vocab = make_vocab([table[i] for i in order], vocab, multi, files[order[0]])
        check_split(train_idx, valid_idx, None if multi else [table.get(i) for i in range(len(files))],
                    allow_empty_valid=allow_empty_valid, what="images")
        items = [files[i] for i in order]
        dblock = DataBlock(blocks=(ImageBlock(img_cls), MultiCategoryBlock(vocab) if multi else CategoryBlock(vocab)),
                           get_y=Lookup({str(files[i]): table[i] for i in order}),
                           splitter=IndexSplitter(range(len(train_idx), len(order))),
                           item_tfms=item_tfms, batch_tfms=batch_tfms)
        dls = dblock.dataloaders(items, bs=bs, val_bs=val_bs, shuffle=shuffle, num_workers=num_workers, seed=seed,
                                 device=device, on_error=on_error, cache=presized_cache(cache))
        dls.labeller, dls._skipped = labeller, skipped
        return dls
