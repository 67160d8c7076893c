"""`DataBlock`: one data pipeline for every task — get items, split them, and build each one lazily.

``DataBlock(blocks, get_items, get_x, get_y, splitter, item_tfms, batch_tfms, n_inp)`` describes the data;
``.dataloaders(source)`` builds the loaders. The items (paths, rows) stay cheap references in the main
process; each item is decoded only when a loader worker asks for it (see `learnkit.core.blockdata`).
``.summary(source)`` walks one item through every step and prints what each produced.

>>> import torch
>>> dblock = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=lambda o: torch.tensor([float(o)]),
...                    get_y=lambda o: "odd" if o % 2 else "even", splitter=EndSplitter(0.25))
>>> dls = dblock.dataloaders(list(range(8)), bs=2, num_workers=0, device="cpu")
>>> dls.vocab, len(dls.train.dataset), len(dls.valid.dataset)
(['even', 'odd'], 6, 2)
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .block import CategoryBlock, TransformBlock
from .blockdata import BlockDataset, DataBlockError, ItemSampler, SkipLog, item_name
from .blockloader import TrainLoader, collate_skipping, default_num_workers
from .data import DataLoaders, make_loader
from .device import default_device
from .items import is_missing
from .split import RandomSplitter, as_indices, check_split

__all__ = ["DataBlock", "Datasets", "BlockDataLoaders"]


def _listify(o: Any) -> list:
    if o is None:
        return []
    return list(o) if isinstance(o, (list, tuple)) else [o]


class _Rows:
    """The rows of a data frame as items (``rows[i]`` is a pandas Series named by its index)."""

    def __init__(self, df: Any):
        self.df = df

    def __len__(self) -> int:
        return len(self.df)

    def __getitem__(self, i: int) -> Any:
        return self.df.iloc[i]


def _as_items(items: Any) -> Any:
    if hasattr(items, "iloc") and hasattr(items, "columns"):
        return _Rows(items)
    if hasattr(items, "__getitem__") and hasattr(items, "__len__") and not isinstance(items, (str, bytes, dict)):
        return items
    return list(items)


class Datasets:
    """The training and validation `BlockDataset` of a `DataBlock`, with its set-up blocks.

    >>> dblock = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=lambda o: torch.tensor([float(o)]),
    ...                    get_y=lambda o: "odd" if o % 2 else "even", splitter=EndSplitter(0.25))
    >>> dsets = dblock.datasets(list(range(8)))  # split and set up; nothing built yet
    >>> dsets, dsets.vocab
    (Datasets(train=6, valid=2, blocks=[TransformBlock(), CategoryBlock(2 classes)]), ['even', 'odd'])
    >>> dsets.train[3], dsets.valid[0]  # each item is built when it is read
    ((tensor([3.]), tensor(1)), (tensor([6.]), tensor(0)))
    """

    def __init__(self, train: BlockDataset, valid: BlockDataset | None, blocks: list[TransformBlock], n_inp: int,
                 skip_log: SkipLog | None):
        self.train, self.valid, self.blocks, self.n_inp, self.skip_log = train, valid, blocks, n_inp, skip_log

    @property
    def targets(self) -> list[TransformBlock]:
        return self.blocks[self.n_inp:]

    @property
    def vocab(self) -> list[Any] | None:
        return getattr(self.targets[0], "vocab", None) if len(self.targets) == 1 else None

    def __getitem__(self, i: int) -> tuple | None:
        return self.train[i]

    def __len__(self) -> int:
        return len(self.train)

    def __repr__(self) -> str:
        return f"Datasets(train={len(self.train)}, valid={len(self.valid) if self.valid else 0}, blocks={self.blocks})"


class DataBlock:
    """How to build a task's data (fastai's ``DataBlock``).

    Args:
        blocks: one block (class or instance) per value of an item, inputs first: e.g.
            ``(ImageBlock, CategoryBlock)``.
        get_items: ``source -> items`` (e.g. `get_image_files`); ``None``: the source is the items (a list, or
            a data frame whose rows are the items).
        get_x, get_y: item → raw input / target value; one function, or a list with one per input / target.
            ``None``: the item itself.
        splitter: ``items -> (train_idx, valid_idx)``; default ``RandomSplitter(0.2, seed=42)``.
        item_tfms: transforms of one decoded item, in the workers (e.g. ``Resize(460)``).
        batch_tfms: transforms of a batch on the device (e.g. ``aug_transforms()``).
        n_inp: how many leading blocks are inputs (default: all but the last).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [0.1, 0.9, 0.8, 0.2, 0.7, 0.3], "label": ["lo", "hi", "hi", "lo", "hi", "lo"],
    ...                    "is_valid": [False, False, False, False, True, True]})
    >>> dblock = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=lambda row: torch.tensor([float(row["x"])]),
    ...                    get_y=ColReader("label"), splitter=ColSplitter("is_valid"))
    >>> dls = dblock.dataloaders(df, bs=2, num_workers=0, device="cpu")  # the rows are the items
    >>> xb, yb = dls.one_batch()
    >>> dls.vocab, xb.shape, yb.shape, len(dls.valid.dataset)
    (['hi', 'lo'], torch.Size([2, 1]), torch.Size([2]), 2)
    """

    def __init__(self, blocks: Sequence[Any], get_items: Callable[[Any], Any] | None = None,
                 get_x: Callable | Sequence[Callable] | None = None, get_y: Callable | Sequence[Callable] | None = None,
                 splitter: Callable[[Any], tuple] | None = None, item_tfms: Any = None, batch_tfms: Any = None,
                 n_inp: int | None = None):
        self.blocks = [b() if isinstance(b, type) else b for b in _listify(blocks)]
        if not self.blocks:
            raise ValueError("DataBlock needs at least one block, e.g. blocks=(ImageBlock, CategoryBlock)")
        for b in self.blocks:
            if not isinstance(b, TransformBlock):
                raise TypeError(f"blocks must be blocks (ImageBlock, CategoryBlock, ...), got {b!r}")
        self.n_inp = n_inp if n_inp is not None else max(1, len(self.blocks) - 1)
        if not 1 <= self.n_inp <= len(self.blocks):
            raise ValueError(f"n_inp={n_inp} but there are {len(self.blocks)} blocks")
        n_tgt = len(self.blocks) - self.n_inp
        self.get_x = self._getters(get_x, self.n_inp, "get_x", "input")
        self.get_y = self._getters(get_y, n_tgt, "get_y", "target")
        for f, what in ((get_items, "get_items"), (splitter, "splitter")):
            if f is not None and not callable(f):
                raise TypeError(f"{what} must be callable, got {f!r}")
        self.get_items, self.splitter = get_items, splitter
        self.item_tfms = [t for b in self.blocks for t in b.item_tfms] + _listify(item_tfms)
        self.batch_tfms = [t for b in self.blocks for t in b.batch_tfms] + _listify(batch_tfms)

    @staticmethod
    def _getters(f: Any, n: int, name: str, what: str) -> list[Callable | None]:
        fs = _listify(f)
        if not fs:
            return [None] * n
        if n == 0:
            raise ValueError(f"{name} is given but there is no {what} block: add one to blocks or set n_inp")
        if len(fs) == 1:
            fs = fs * n
        if len(fs) != n:
            raise ValueError(f"{len(fs)} {name} functions for {n} {what} blocks: give one per {what} block "
                             "(or one for all)")
        for g in fs:
            if g is not None and not callable(g):
                raise TypeError(f"{name} must be callable (or a list of callables), got {g!r}")
        return fs

    @property
    def getters(self) -> list[Callable | None]:
        return self.get_x + self.get_y

    def _step_names(self) -> list[str]:
        nx, ny = len(self.get_x), len(self.get_y)
        return ([f"get_x[{k}]" if nx > 1 else "get_x" for k in range(nx)]
                + [f"get_y[{k}]" if ny > 1 else "get_y" for k in range(ny)])

    def new(self, item_tfms: Any = None, batch_tfms: Any = None) -> "DataBlock":
        """A copy with other item and/or batch transforms (e.g. a larger size for progressive resizing)."""
        out = copy.copy(self)
        if item_tfms is not None:
            out.item_tfms = [t for b in self.blocks for t in b.item_tfms] + _listify(item_tfms)
        if batch_tfms is not None:
            out.batch_tfms = [t for b in self.blocks for t in b.batch_tfms] + _listify(batch_tfms)
        return out

    # --- items and split ---------------------------------------------------------------------------
    def _items(self, source: Any) -> tuple[Any, Any]:
        """``(raw, items)``: what ``get_items`` returned (the splitter sees it) and the indexable items."""
        try:
            raw = self.get_items(source) if self.get_items is not None else source
        except Exception as e:  # noqa: BLE001 - name the step and the source
            raise DataBlockError(f"get_items failed on {item_name(source)}: {type(e).__name__}: {e}") from e
        items = _as_items(raw)
        if len(items) == 0:
            raise DataBlockError(f"get_items found no items in {item_name(source)}; check the path and the file "
                                 "suffixes")
        return raw, items

    def _split(self, raw: Any, n: int) -> tuple[list[int], list[int]]:
        splitter = self.splitter or RandomSplitter(0.2, seed=42)
        try:
            train, valid = splitter(raw)
        except Exception as e:  # noqa: BLE001
            raise DataBlockError(f"splitter {splitter!r} failed: {type(e).__name__}: {e}") from e
        train, valid = as_indices(train, "training"), as_indices(valid, "validation")  # not boolean masks
        bad = [i for i in train + valid if not 0 <= i < n]
        if bad:
            raise DataBlockError(f"the splitter returned index {bad[0]}, outside the {n} items")
        check_split(train, valid, allow_empty_valid=True)
        return train, valid

    def _setup(self, blocks: list[TransformBlock], items: Any, train: list[int], valid: list[int], on_error: str,
               skip_log: SkipLog | None) -> tuple[list[int], list[int]]:
        """Read the values the blocks need for ``setup`` (labels) in the main process and fit the blocks."""
        bad: set[int] = set()
        names = self._step_names()
        values: dict[int, dict[int, Any]] = {}
        for k, b in enumerate(blocks):
            if not b.needs_setup:
                continue
            g, vals = self.getters[k], {}
            for i in train + valid:
                if i in bad:
                    continue
                o = items[i]
                try:
                    v = g(o) if g is not None else o
                    if is_missing(v):
                        raise ValueError(f"the value is missing ({v!r})")
                    vals[i] = v
                except Exception as e:  # noqa: BLE001 - a user function can raise anything; name the item
                    msg = f"{names[k]} failed on item {item_name(o)}: {type(e).__name__}: {e}"
                    if on_error == "raise":
                        raise DataBlockError(msg + ". Fix the function or the data, or pass on_error='skip'.") from e
                    skip_log.add(item_name(o), msg)
                    bad.add(i)
            values[k] = vals
        train = [i for i in train if i not in bad]
        valid = [i for i in valid if i not in bad]
        if not train:
            raise DataBlockError("every training item was skipped; see dls.skipped / the warnings for why")
        for k, vals in values.items():
            b = blocks[k]
            try:
                b.setup([vals[i] for i in train], example=item_name(items[train[0]]))
            except (TypeError, ValueError) as e:
                raise DataBlockError(f"setting up {type(b).__name__} on the {names[k]} values failed: {e}") from e
            if isinstance(b, CategoryBlock) and valid:
                known = set(b.vocab)
                only = sorted({vals[i] for i in valid} - known, key=str)
                if only:
                    raise DataBlockError(f"class(es) {only[:5]} appear only in the validation set, so the model can "
                                         "never learn them; add training examples or change the split.")
        return train, valid

    # --- building ----------------------------------------------------------------------------------
    def datasets(self, source: Any, on_error: str = "raise", cache: Any = None) -> Datasets:
        """Items, split and set-up blocks as a training and a validation `BlockDataset` (nothing decoded).
        ``cache``: a factory ``(dataset) -> cache or None`` (see `learnkit.core.cache`)."""
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        raw, items = self._items(source)
        train, valid = self._split(raw, len(items))
        blocks = [copy.deepcopy(b) for b in self.blocks]
        skip_log = SkipLog() if on_error == "skip" else None
        train, valid = self._setup(blocks, items, train, valid, on_error, skip_log)

        def ds(idx: list[int], training: bool) -> BlockDataset:
            d = BlockDataset(items, self.getters, blocks, self.item_tfms, idx, training, on_error, skip_log,
                             self._step_names())
            if cache is not None:
                d.cache = cache(d)
            return d
        return Datasets(ds(train, True), ds(valid, False) if valid else None, blocks, self.n_inp, skip_log)

    def dataloaders(self, source: Any, bs: int = 64, val_bs: int | None = None, shuffle: bool = True,
                    drop_last: bool | None = None, num_workers: int | None = None, seed: int | None = 42,
                    device: str | torch.device | None = None, on_error: str = "raise", cache: Any = None) -> DataLoaders:
        """The loaders over ``source``: the task's `DataLoaders` type (set by the first input block, e.g.
        ImageDataLoaders) holding a shuffled training loader and a validation loader (``val_bs``, default
        ``2 * bs``).

        ``num_workers=None``: the CPUs available, at most 8 (``$LEARNKIT_NUM_WORKERS`` overrides), and 0 where
        worker processes cannot start (see `default_num_workers`). The training loader drops its last partial
        batch when shuffling (a batch of one breaks batch-norm; ``drop_last`` overrides). ``on_error``:
        ``'raise'`` (a bad item raises naming the step and item) or ``'skip'`` (it is dropped from its batch,
        warned about and listed in ``dls.skipped``).
        """
        dsets = self.datasets(source, on_error, cache)
        dev = default_device(device)
        inputs = dsets.blocks[: self.n_inp]
        own = next((b for b in inputs if hasattr(b, "dataloaders")), None)
        if own is not None:  # a block that batches its values itself (TextBlock: tokenised once, length-bucketed)
            return own.dataloaders(dsets, bs=bs, seed=seed, device=dev)
        train, valid = dsets.train, dsets.valid
        nw = default_num_workers(num_workers, train)
        sampler = ItemSampler(len(train), shuffle=shuffle, seed=seed, with_seeds=not train.deterministic)
        train_dl = make_loader(train, bs, drop_last=shuffle and len(train) > bs if drop_last is None else drop_last,
                               collate_fn=collate_skipping, num_workers=nw, device=dev, sampler=sampler, seed=seed,
                               loader_cls=TrainLoader)  # a batch that skipping left with one item is merged
        valid_dl = None if valid is None else make_loader(valid, val_bs or 2 * bs, collate_fn=collate_skipping,
                                                          num_workers=nw, device=dev, seed=seed)
        dls_type = next((b.dls_type for b in inputs if b.dls_type is not None), BlockDataLoaders)
        return dls_type.from_datasets(dsets, train_dl, valid_dl, batch_tfms=self.batch_tfms, bs=bs, device=dev)

    def summary(self, source: Any, bs: int = 4, show: Callable[[str], None] = print) -> None:
        """Walk one item through every step, printing what each produced; a failure names the step and the item
        (and is raised after it is printed)."""
        def fmt(v: Any) -> str:
            if isinstance(v, torch.Tensor):
                return f"{type(v).__name__} {v.dtype} {list(v.shape)}" + (f" = {v.tolist()}" if v.numel() <= 8 else "")
            return item_name(v)
        try:
            raw, items = self._items(source)
            show(f"get_items: {len(items)} items, e.g. {item_name(items[0])}")
            train, valid = self._split(raw, len(items))
            show(f"splitter {self.splitter or 'RandomSplitter(0.2, seed=42)'}: {len(train)} training, "
                 f"{len(valid)} validation items")
            dsets = self.datasets(source, on_error="raise")
            for b in dsets.blocks:
                show(f"block {b!r}")
            show(f"building training item 0: {dsets.train.item_name(0)}")
            dsets.train.walk(0, report=lambda step, v: show(f"  {step}: {fmt(v)}"))
            dls = self.dataloaders(source, bs=min(bs, len(dsets.train)), num_workers=0, device="cpu", drop_last=False)
            batch = next(iter(dls[0]))  # the collated batch, before the batch transforms
            show("collated batch: " + ", ".join(fmt(b) for b in batch))
            out = dls.on_device(tuple(batch), training=True)
            show("after batch_tfms (" + (", ".join(map(repr, self.batch_tfms)) or "none") + "): "
                 + ", ".join(fmt(b) for b in out))
        except DataBlockError as e:
            show(f"FAILED: {e}")
            raise

    def __repr__(self) -> str:
        return (f"DataBlock(blocks={self.blocks}, n_inp={self.n_inp}, item_tfms={self.item_tfms}, "
                f"batch_tfms={self.batch_tfms})")


class BlockDataLoaders(DataLoaders):
    """The `DataLoaders` a `DataBlock` builds for inputs that have no task type: batch transforms (callables
    on the first input; random ones, ``random=True`` or unknown, only in training), the target block's vocab,
    loss and decoding, and ``skipped``.

    >>> dblock = DataBlock(blocks=(TransformBlock, RegressionBlock), get_x=lambda o: torch.tensor([float(o)]),
    ...                    get_y=lambda o: 2.0 * o, splitter=EndSplitter(0.25))
    >>> dls = dblock.dataloaders(list(range(8)), bs=2, num_workers=0, device="cpu")
    >>> type(dls).__name__, dls.c, dls.loss_func, dls.decode_target(torch.tensor(3.0))
    ('BlockDataLoaders', 1, MSELossFlat(), 3.0)
    """

    def __init__(self, train: Any, valid: Any = None, device: str | torch.device | None = None, n_inp: int = 1,
                 blocks: Sequence[TransformBlock] = (), batch_tfms: Sequence[Any] = (),
                 skip_log: SkipLog | None = None, bs: int = 64):
        targets = list(blocks)[n_inp:]
        vocab = getattr(targets[0], "vocab", None) if len(targets) == 1 else None
        super().__init__(train, valid, device=device, n_inp=n_inp, vocab=vocab)
        self.blocks, self.batch_tfms, self.skip_log, self.bs = list(blocks), list(batch_tfms), skip_log, bs
        self.y_block = targets[0] if len(targets) == 1 else None
        self.loss_func = self.y_block.loss_func() if self.y_block is not None else None

    @classmethod
    def from_datasets(cls, dsets: Datasets, train: Any, valid: Any, batch_tfms: Sequence[Any], bs: int,
                      device: torch.device) -> "BlockDataLoaders":
        return cls(train, valid, device=device, n_inp=dsets.n_inp, blocks=dsets.blocks, batch_tfms=batch_tfms,
                   skip_log=dsets.skip_log, bs=bs)

    @property
    def c(self) -> int | None:
        return self.y_block.n_out if self.y_block is not None else None

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(item, reason)`` for every item left out so far by ``on_error='skip'`` (files are met lazily)."""
        return self.skip_log.read() if self.skip_log is not None else []

    def on_device(self, batch: tuple, training: bool) -> tuple:
        x = batch[0]
        for t in self.batch_tfms:
            if training or not getattr(t, "random", True):
                x = t(x)
        return (x, *batch[1:])

    def decode_target(self, y: torch.Tensor) -> Any:
        return self.y_block.decode(y) if self.y_block is not None else y
