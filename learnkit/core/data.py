"""`DataLoaders`: a training and a validation loader, the device they feed, and the task's hooks.

A loader is any iterable of batches with ``__len__`` — usually a ``torch.utils.data.DataLoader``. A batch
is a tuple ``(*inputs, *targets)``; ``n_inp`` says how many leading elements are inputs. Task folders
subclass `DataLoaders` to add decoding (``decode``), display (``show_batch``), inference loaders
(``test_dl``) and on-device batch transforms (``on_device``).

``dls.train`` and ``dls.valid`` are `DeviceLoader` views, as fastai's are: iterating one yields batches on the
device with the batch transforms applied (``first(dls.valid)`` feeds a model as it is). The `Learner` reads
the loaders themselves (``dls[0]``, ``dls[1]``: collated batches as the workers make them) and prepares each
batch once (`DataLoaders.prepare_batch`).

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> ds = TensorDataset(torch.randn(10, 3), torch.randn(10, 1))
>>> dls = DataLoaders.from_dsets(ds, ds, bs=4, device="cpu")
>>> [x.shape for x in dls.one_batch()]
[torch.Size([4, 3]), torch.Size([4, 1])]
"""
from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from .device import default_device, to_device
from .validation import check_batch_size

__all__ = ["DataLoaders", "DeviceLoader", "make_loader"]  # raw_loader, is_prepared: for learnkit's own modules

#: the attribute that marks a batch's first tensor as prepared (`DataLoaders.prepare_batch`)
_PREPARED = "_learnkit_prepared"


def make_loader(dataset: Dataset, bs: int = 64, shuffle: bool = False, drop_last: bool = False,
                seed: int | None = 42, collate_fn: Callable | None = None, num_workers: int = 0,
                device: torch.device | None = None, sampler: Any = None,
                loader_cls: type[DataLoader] = DataLoader) -> DataLoader:
    """A ``DataLoader`` (or ``loader_cls``) with its own seeded generator (shuffling independent of the global
    RNG) and ``pin_memory`` on CUDA.

    >>> len(make_loader(list(range(10)), bs=4))
    3
    """
    check_batch_size(bs)
    if shuffle and sampler is None and hasattr(dataset, "__len__") and len(dataset) == 0:
        raise ValueError("cannot shuffle an empty dataset (0 items): the training set is empty. Check that the data "
                         "source is not empty and that the split left items in training (a valid_pct close to 1, a "
                         "splitter or valid column that puts every item in validation?)")
    g = torch.Generator()
    g.manual_seed(seed if seed is not None else int(torch.seed() % 2**62))
    device = torch.device(device) if device is not None else default_device()
    if isinstance(dataset, IterableDataset):
        shuffle = False  # a stream shuffles itself (its shard order, a shuffle buffer)
    return loader_cls(dataset, batch_size=bs, shuffle=shuffle if sampler is None else False, drop_last=drop_last,
                      collate_fn=collate_fn, num_workers=num_workers, generator=g, sampler=sampler,
                      pin_memory=device.type == "cuda",
                      # a stream's workers start again each epoch, so that set_epoch reaches their copy of it
                      persistent_workers=num_workers > 0 and not isinstance(dataset, IterableDataset))


class DeviceLoader:
    """A loader as a model sees it: iterating yields each batch on the device with the batch transforms applied
    (augmentation when ``training``), which is what ``dls.train``, ``dls.valid`` and a vision ``dls.test_dl(...)``
    give (fastai's ``TfmdDL``). Every other attribute (``dataset``, ``batch_size``, ``sampler``...) is the
    underlying loader's, ``raw``.

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> dls = DataLoaders.from_dsets(TensorDataset(torch.zeros(6, 2), torch.ones(6)), bs=4, device="cpu")
    >>> xb, yb = dls.train.one_batch()
    >>> type(dls.train).__name__, len(dls.train), dls.train.bs, xb.shape
    ('DeviceLoader', 2, 4, torch.Size([4, 2]))
    """

    def __init__(self, raw: Iterable, dls: "DataLoaders", training: bool):
        self.raw, self.dls, self.training = raw, dls, training

    def __iter__(self) -> Iterator[tuple]:
        for batch in self.raw:
            yield self.dls.prepare_batch(batch, self.training)

    def __len__(self) -> int:
        return len(self.raw)

    def __getattr__(self, name: str) -> Any:
        raw = self.__dict__.get("raw")
        if raw is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(raw, name)

    @property
    def bs(self) -> int | None:
        """The batch size (fastai's ``dl.bs``)."""
        return getattr(self.raw, "batch_size", None)

    def one_batch(self) -> tuple:
        """The first batch, on the device and transformed."""
        for batch in self:
            return batch
        raise ValueError(f"this loader has no batches (its dataset has {len(getattr(self.raw, 'dataset', []))} items)")

    def decode(self, batch: Sequence[Any]) -> tuple:
        """A prepared batch with its inputs' normalisation undone, for display (fastai's ``dl.decode``): images as
        floats in ``[0, 1]``; the rest as it is. Needs a DataLoaders that decodes images (vision)."""
        decode = getattr(self.dls, "decode_images", None)
        if decode is None:
            raise NotImplementedError(f"{type(self.dls).__name__} does not decode batches; only image DataLoaders do")
        batch = tuple(batch)
        return (decode(batch[0]), *batch[1:])

    def __repr__(self) -> str:
        return f"DeviceLoader({type(self.raw).__name__}, batches={len(self)}, training={self.training})"


def is_prepared(x: Any) -> bool:
    """Whether ``x`` is the first tensor of a batch that `DataLoaders.prepare_batch` prepared (so no batch
    transform runs on it again)."""
    return bool(getattr(x, _PREPARED, False))


def raw_loader(dl: Any) -> Any:
    """The loader behind a `DeviceLoader` (``dls.valid``, a vision ``dls.test_dl(...)``); any other ``dl`` itself.
    Code that prepares batches itself (`DataLoaders.prepare_batch`) iterates this.

    >>> dls = DataLoaders([[1, 2]], device="cpu")
    >>> raw_loader(dls.train) is dls[0], raw_loader(dls[0]) is dls[0]
    (True, True)
    """
    return dl.raw if isinstance(dl, DeviceLoader) else dl


class DataLoaders:
    """The loaders a `Learner` trains on: ``train``, ``valid`` (may be ``None``) and the device.

    Args:
        train: the training loader (shuffled).
        valid: the validation loader, or ``None`` to train without validation.
        device: where batches go; ``None`` picks CUDA, then MPS, then CPU.
        n_inp: how many leading elements of a batch are model inputs.
        vocab: the class names for classification tasks (``None`` for regression).

    >>> from torch.utils.data import DataLoader
    >>> dls = DataLoaders(DataLoader(range(8), batch_size=4, shuffle=True), DataLoader(range(4), batch_size=4),
    ...                   device="cpu", vocab=["even", "odd"])
    >>> len(dls.train), len(dls.valid), dls.c, dls.decode(1)
    (2, 1, 2, 'odd')
    >>> dls
    DataLoaders(train items=8, valid items=4, device=cpu, batch size=4, classes=2: even, odd)
    """

    def __init__(self, train: Iterable, valid: Iterable | None = None, device: str | torch.device | None = None,
                 n_inp: int = 1, vocab: Sequence[Any] | None = None):
        self.device = default_device(device)
        self.train, self.valid = train, valid
        self.n_inp = n_inp
        self.vocab = list(vocab) if vocab is not None else None

    @classmethod
    def from_dsets(cls, train_ds: Dataset, valid_ds: Dataset | None = None, bs: int = 64,
                   shuffle: bool = True, drop_last: bool = False, collate_fn: Callable | None = None,
                   num_workers: int = 0, seed: int | None = 42, device: str | torch.device | None = None,
                   n_inp: int = 1, vocab: Sequence[Any] | None = None, val_bs: int | None = None,
                   n_items: int | None = None, steps_per_epoch: int | None = None) -> "DataLoaders":
        """Wrap any datasets in loaders (validation never shuffled, at ``val_bs``: by default twice the
        batch size, or ``bs`` as in fastai when ``shuffle=False`` — ordered batches, such as fastbook's
        ``group_chunks`` for a stateful ``LMModel3``, must keep their size).

        A training ``IterableDataset`` (a stream) without a length needs ``n_items=`` (items per epoch) or
        ``steps_per_epoch=``; see `learnkit.core.iterable`. A validation stream is read whole, in order.

        ``vocab`` defaults to the dataset's ``classes`` (torchvision's ``CIFAR10``, ``FashionMNIST``,
        ``ImageFolder``...); with one, the default loss is cross-entropy.
        """
        dev = default_device(device)
        if isinstance(train_ds, IterableDataset):
            from .iterable import iterable_loader
            train = iterable_loader(train_ds, bs, n_items, steps_per_epoch, collate_fn=collate_fn,
                                    num_workers=num_workers, drop_last=drop_last, device=dev)
        else:
            train = make_loader(train_ds, bs, shuffle=shuffle, drop_last=drop_last, seed=seed, collate_fn=collate_fn,
                                num_workers=num_workers, device=dev)
        if isinstance(valid_ds, IterableDataset) and not hasattr(valid_ds, "__len__"):
            raise ValueError(f"the validation stream {type(valid_ds).__name__} has no length: wrap it as "
                             "SizedIterable(valid_ds, n_items) (learnkit.core.iterable) so that validation can be counted")
        if val_bs is None:
            val_bs = bs * 2 if shuffle else bs
        valid = None if valid_ds is None else make_loader(valid_ds, val_bs, collate_fn=collate_fn,
                                                          num_workers=num_workers, device=dev)
        classes = getattr(train_ds, "classes", None)
        vocab = vocab if vocab is not None else (list(classes) if isinstance(classes, (list, tuple)) else None)
        dls = cls(train, valid, device=dev, n_inp=n_inp, vocab=vocab)
        if vocab is not None and getattr(dls, "loss_func", None) is None:
            from .losses import CrossEntropyLossFlat
            dls.loss_func = CrossEntropyLossFlat()
        return dls

    # --- access --------------------------------------------------------------------------------------
    @property
    def train(self) -> DeviceLoader | None:
        """The training loader as the model sees it (a `DeviceLoader`); ``dls[0]`` is the loader itself."""
        return self._train_view

    @train.setter
    def train(self, dl: Iterable | None) -> None:
        self._train, self._train_view = self._with_view(dl, training=True)

    @property
    def valid(self) -> DeviceLoader | None:
        """The validation loader as the model sees it (a `DeviceLoader`); ``dls[1]`` is the loader itself."""
        return self._valid_view

    @valid.setter
    def valid(self, dl: Iterable | None) -> None:
        self._valid, self._valid_view = self._with_view(dl, training=False)

    def _with_view(self, dl: Iterable | None, training: bool) -> tuple[Iterable | None, DeviceLoader | None]:
        """``(the loader itself, its DeviceLoader view)`` for ``dl`` (a loader, a view, or ``None``)."""
        raw = raw_loader(dl)
        return raw, None if raw is None else DeviceLoader(raw, self, training=training)

    @property
    def train_ds(self) -> Any:
        """The training loader's dataset (fastai's ``dls.train_ds``; ``None`` for a loader without one)."""
        return getattr(self._train, "dataset", None)

    @property
    def valid_ds(self) -> Any:
        """The validation loader's dataset (``None`` without a validation set)."""
        return getattr(self._valid, "dataset", None)

    @property
    def loaders(self) -> list[Iterable]:
        """The loaders themselves (not their `DeviceLoader` views): training, then validation if any."""
        return [dl for dl in (self._train, self._valid) if dl is not None]

    def __getitem__(self, i: int) -> Iterable:
        """The training (0) or validation (1) loader itself, as the workers batch it."""
        dl = (self._train, self._valid)[i]
        if dl is None:
            raise IndexError("this DataLoaders has no validation set (it was built with valid_pct=0)")
        return dl

    @property
    def c(self) -> int | None:
        """Number of model outputs for classification: the number of classes."""
        return len(self.vocab) if self.vocab is not None else None

    def to(self, device: str | torch.device) -> "DataLoaders":
        """Send batches to ``device``; torch loaders pin their memory exactly when it is a CUDA device."""
        self.device = torch.device(device)
        for dl in self.loaders:
            if isinstance(dl, DataLoader):
                dl.pin_memory = self.device.type == "cuda"
        return self

    # --- hooks for task subclasses -------------------------------------------------------------------
    def on_device(self, batch: tuple, training: bool) -> tuple:
        """Batch transforms that run on the device after collation (augmentation, normalisation).
        The identity here; vision overrides it. ``training`` is false for validation and inference."""
        return batch

    def prepare_batch(self, batch: Any, training: bool, device: torch.device | None = None) -> tuple:
        """A batch as a loader gives it, on ``device`` (default: this one's) with the batch transforms applied
        (`on_device`). A batch this already prepared (from iterating ``dls.train``, ``dls.valid``...) is
        returned as it is, so no transform runs twice."""
        batch = tuple(batch)
        if batch and is_prepared(batch[0]):
            return batch
        out = tuple(self.on_device(to_device(batch, self.device if device is None else device), training))
        if out and isinstance(out[0], torch.Tensor) and not (batch and out[0] is batch[0]):
            setattr(out[0], _PREPARED, True)  # a new tensor: the loader's own never carries the mark
        return out

    def one_batch(self, split: int = 0) -> tuple:
        """The first batch of the training (0) or validation (1) loader, on the device, transformed."""
        return self.prepare_batch(next(iter(self[split])), training=split == 0)

    def test_dl(self, items: Sequence[Any], with_labels: bool = False, bs: int | None = None) -> Iterable:
        """A loader over new items, preprocessed as the validation set is. Task subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not know how to load new items; "
                                  "use a task DataLoaders (ImageDataLoaders, TabularDataLoaders, ...)")

    def decode(self, idx: int) -> Any:
        """The label of class index ``idx`` (the index itself when there is no vocab)."""
        return self.vocab[idx] if self.vocab is not None else idx

    def decode_pred(self, decoded: torch.Tensor, probs: torch.Tensor) -> tuple:
        """``(label, index_or_value, probs)`` for one predicted item; task subclasses refine it."""
        if self.vocab is not None and decoded.ndim == 0:
            idx = int(decoded)
            return self.vocab[idx], idx, probs
        if self.vocab is not None and decoded.dtype == torch.bool and decoded.ndim == 1:  # multi-label
            return [v for v, f in zip(self.vocab, decoded.tolist()) if f], decoded, probs
        if decoded.numel() == 1:
            return float(decoded), float(decoded), probs
        return decoded, decoded, probs

    def decode_predict(self, item: Any, decoded: torch.Tensor, probs: torch.Tensor) -> tuple:
        """What `Learner.predict(item)` returns: ``decode_pred(decoded, probs)``. A task whose answer
        shows the input too (tabular: the decoded row) overrides this; the others need not."""
        return self.decode_pred(decoded, probs)

    def show_batch(self, max_n: int = 9, split: int = 0):
        raise NotImplementedError(f"{type(self).__name__} has no show_batch; task DataLoaders provide one")

    # --- display -------------------------------------------------------------------------------------
    def _n_items(self, dl: Iterable | None) -> int:
        if dl is None:
            return 0
        ds = getattr(dl, "dataset", None)
        try:
            return len(ds) if ds is not None else len(dl)
        except TypeError:
            return len(dl)

    def summary(self) -> dict[str, Any]:
        out = {"type": type(self).__name__, "train items": self._n_items(self._train),
               "valid items": self._n_items(self._valid), "device": str(self.device)}
        bs = getattr(self._train, "batch_size", None)
        if bs is not None:
            out["batch size"] = bs
        if self.vocab is not None:
            shown = ", ".join(map(str, self.vocab[:10])) + (" ..." if len(self.vocab) > 10 else "")
            out["classes"] = f"{len(self.vocab)}: {shown}"
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v}" for k, v in self.summary().items() if k != "type") + ")"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
                       f"{html.escape(str(v))}</td></tr>" for k, v in self.summary().items())
        return f"<table>{rows}</table>"
