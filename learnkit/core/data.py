"""`DataLoaders`: a training and a validation loader, the device they feed, and the task's hooks.

A loader is any iterable of batches with ``__len__`` — usually a ``torch.utils.data.DataLoader``. A batch
is a tuple ``(*inputs, *targets)``; ``n_inp`` says how many leading elements are inputs. Task folders
subclass `DataLoaders` to add decoding (``decode``), display (``show_batch``), inference loaders
(``test_dl``) and on-device batch transforms (``on_device``).

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> ds = TensorDataset(torch.randn(10, 3), torch.randn(10, 1))
>>> dls = DataLoaders.from_dsets(ds, ds, bs=4, device="cpu")
>>> [x.shape for x in dls.one_batch()]
[torch.Size([4, 3]), torch.Size([4, 1])]
"""
from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from .device import default_device, to_device
from .validation import check_batch_size

__all__ = ["DataLoaders", "make_loader"]


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
        self.train, self.valid = train, valid
        self.device = default_device(device)
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
    def loaders(self) -> list[Iterable]:
        return [dl for dl in (self.train, self.valid) if dl is not None]

    def __getitem__(self, i: int) -> Iterable:
        dl = (self.train, self.valid)[i]
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

    def one_batch(self, split: int = 0) -> tuple:
        """The first batch of the training (0) or validation (1) loader, on the device, transformed."""
        batch = next(iter(self[split]))
        return self.on_device(to_device(tuple(batch), self.device), training=split == 0)

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
        out = {"type": type(self).__name__, "train items": self._n_items(self.train),
               "valid items": self._n_items(self.valid), "device": str(self.device)}
        bs = getattr(self.train, "batch_size", None)
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
