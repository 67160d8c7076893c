"""Blocks: what kind each value of an item is — how a raw value becomes a tensor, and back.

A block's ``encode`` runs lazily on one value inside a loader worker (decode an image, look up a class);
``setup`` fits it on the training values in the main process (a category vocab); ``decode`` turns a
tensor back into something readable; ``loss_func`` is the default loss when it is the target; ``n_out``
the number of model outputs it needs. `DataBlock` (in `learnkit.core.datablock`) puts blocks together.

>>> cat = CategoryBlock(); cat.setup(["dog", "cat", "dog"]); cat.vocab, int(cat.encode("dog"))
(['cat', 'dog'], 1)
>>> multi = MultiCategoryBlock(); multi.setup([["a"], ["a", "b"]]); multi.encode(["b"]).tolist()
[0.0, 1.0]
>>> reg = RegressionBlock(); reg.setup([1.5, 2.0]); reg.n_out, reg.encode(2.0)
(1, tensor(2.))
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .items import make_vocab, py_value
from .losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat

__all__ = ["TransformBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "block_from_config",
           "BLOCK_TYPES"]


class TransformBlock:
    """A kind of value. The base block passes values through ``encode`` (default: unchanged, tensors as they
    are); subclasses decode files, look up classes, etc.

    Args:
        encode: raw value → tensor (or anything the collate stacks), run in the workers.
        decode: tensor → readable value (for show_batch and predictions).
        item_tfms / batch_tfms: transforms this kind of value always needs, run before the DataBlock's own.

    >>> length = TransformBlock(encode=lambda s: torch.tensor([float(len(s))]), decode=lambda t: f"{int(t)} chars")
    >>> length.encode("hello"), length.decode(torch.tensor([5.0]))
    (tensor([5.]), '5 chars')
    >>> dblock = DataBlock(blocks=(length, CategoryBlock))  # a block of numbers computed from text, a label
    """

    #: A `DataLoaders` subclass to build when this block is the (first) input, e.g. ImageDataLoaders.
    dls_type: type | None = None
    #: Whether `setup` needs the training values (labels are then read in the main process; cheap getters only).
    needs_setup: bool = False

    def __init__(self, encode: Callable[[Any], Any] | None = None, decode: Callable[[Any], Any] | None = None,
                 item_tfms: Sequence[Any] = (), batch_tfms: Sequence[Any] = ()):
        self._encode, self._decode = encode, decode
        self.item_tfms, self.batch_tfms = list(item_tfms), list(batch_tfms)

    def setup(self, values: Sequence[Any], example: Any = None) -> None:
        """Fit on the training values (nothing for the base block); ``example`` (an item) is named in errors."""

    def encode(self, value: Any) -> Any:
        return self._encode(value) if self._encode is not None else value

    def decode(self, x: Any) -> Any:
        return self._decode(x) if self._decode is not None else x

    @property
    def n_out(self) -> int | None:
        """How many model outputs this block needs as a target (``None``: unknown)."""
        return None

    def loss_func(self) -> nn.Module | None:
        """The default loss when this block is the target (``None``: none)."""
        return None

    def check(self, value: Any) -> None:
        """Raise a clear error for a value this block cannot take (called during setup)."""

    def export_config(self) -> dict:
        if self._encode is not None or self._decode is not None:
            raise TypeError("a TransformBlock with custom encode/decode functions cannot be exported; "
                            "use a built-in block as the target")
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CategoryBlock(TransformBlock):
    """One class per item: the label becomes its index in ``vocab`` (sorted distinct training labels unless
    given). Default loss: cross-entropy. A label not in the vocab raises an error naming it.

    >>> cat = CategoryBlock()
    >>> cat.setup(["dog", "cat", "dog"])  # the DataBlock does it with the training labels
    >>> cat.vocab, cat.encode("dog"), cat.decode(torch.tensor(0)), cat.n_out, cat.loss_func()
    (['cat', 'dog'], tensor(1), 'cat', 2, CrossEntropyLossFlat())
    >>> CategoryBlock(vocab=["low", "mid", "high"]).encode("high")  # a given vocab keeps its order
    tensor(2)
    """

    needs_setup = True

    def __init__(self, vocab: Sequence[Any] | None = None, sort: bool = True):
        super().__init__()
        self.vocab = [py_value(v) for v in vocab] if vocab is not None else None
        self.sort = sort
        self._index: dict[Any, int] = {}
        if self.vocab is not None:
            self._index = {v: i for i, v in enumerate(self.vocab)}

    def check(self, value: Any) -> None:
        if isinstance(value, (list, tuple, set)):
            raise TypeError(f"CategoryBlock got a list of labels {list(value)[:5]!r}: use MultiCategoryBlock for "
                            "several labels per item")

    def setup(self, values: Sequence[Any], example: Any = None) -> None:
        for v in values[:1000]:
            self.check(v)
        values = [py_value(v) for v in values]
        self.vocab = make_vocab(values, self.vocab, multi=False, example=example) if self.sort or self.vocab else \
            list(dict.fromkeys(values))
        self._index = {v: i for i, v in enumerate(self.vocab)}

    def encode(self, value: Any) -> torch.Tensor:
        value = py_value(value)
        if self.vocab is None:
            raise RuntimeError("CategoryBlock has no vocab: call setup() first (DataBlock does)")
        try:
            return torch.tensor(self._index[value], dtype=torch.long)
        except (KeyError, TypeError):
            raise ValueError(f"label {value!r} is not in the vocab {self.vocab[:10]}"
                             + (" ..." if len(self.vocab) > 10 else "")) from None

    def decode(self, x: Any) -> Any:
        return self.vocab[int(x)]

    @property
    def n_out(self) -> int | None:
        return len(self.vocab) if self.vocab is not None else None

    def loss_func(self) -> nn.Module:
        return CrossEntropyLossFlat()

    def export_config(self) -> dict:
        return {"type": "CategoryBlock", "vocab": [py_value(v) for v in self.vocab]}

    def __repr__(self) -> str:
        return f"CategoryBlock({len(self.vocab)} classes)" if self.vocab is not None else "CategoryBlock()"


class MultiCategoryBlock(TransformBlock):
    """Any number of classes per item (a list of labels): a multi-hot float vector over ``vocab``.
    ``encoded=True`` takes the vector itself (one 0/1 per class of ``vocab``). Default loss: binary
    cross-entropy with logits.

    >>> tags = MultiCategoryBlock()
    >>> tags.setup([["cat"], ["cat", "dog"], []])
    >>> tags.encode(["dog"]), tags.decode(torch.tensor([0.9, 0.8])), tags.loss_func()
    (tensor([0., 1.]), ['cat', 'dog'], BCEWithLogitsLossFlat())
    >>> MultiCategoryBlock(vocab=["cat", "dog"], encoded=True).encode([1, 0])  # columns of 0/1 flags
    tensor([1., 0.])
    """

    needs_setup = True

    def __init__(self, vocab: Sequence[Any] | None = None, encoded: bool = False):
        super().__init__()
        if encoded and vocab is None:
            raise ValueError("MultiCategoryBlock(encoded=True) needs the vocab (one name per column)")
        self.vocab = [py_value(v) for v in vocab] if vocab is not None else None
        self.encoded = encoded
        self._index = {v: i for i, v in enumerate(self.vocab)} if self.vocab is not None else {}

    def check(self, value: Any) -> None:
        if not self.encoded and (isinstance(value, (str, bytes)) or not hasattr(value, "__iter__")):
            raise TypeError(f"MultiCategoryBlock needs a list of labels per item, got {value!r}; split a string "
                            "with ColReader(col, label_delim=' ') or use CategoryBlock for one label per item")

    def setup(self, values: Sequence[Any], example: Any = None) -> None:
        for v in values[:1000]:
            self.check(v)
        if self.encoded:
            return
        self.vocab = make_vocab([[py_value(v) for v in labs] for labs in values], self.vocab, multi=True)
        self._index = {v: i for i, v in enumerate(self.vocab)}

    def encode(self, value: Any) -> torch.Tensor:
        if self.encoded:
            out = torch.as_tensor(value, dtype=torch.float32).flatten()
            if len(out) != len(self.vocab):
                raise ValueError(f"an encoded multi-label target needs {len(self.vocab)} values, got {len(out)}")
            return out
        out = torch.zeros(len(self.vocab))
        for lab in value:
            lab = py_value(lab)
            if lab not in self._index:
                raise ValueError(f"label {lab!r} is not in the vocab {self.vocab[:10]}")
            out[self._index[lab]] = 1.0
        return out

    def decode(self, x: Any) -> list[Any]:
        return [v for v, f in zip(self.vocab, (torch.as_tensor(x) > 0.5).tolist()) if f]

    @property
    def n_out(self) -> int | None:
        return len(self.vocab) if self.vocab is not None else None

    def loss_func(self) -> nn.Module:
        return BCEWithLogitsLossFlat()

    def export_config(self) -> dict:
        return {"type": "MultiCategoryBlock", "vocab": [py_value(v) for v in self.vocab], "encoded": self.encoded}

    def __repr__(self) -> str:
        return f"MultiCategoryBlock({len(self.vocab) if self.vocab else 0} classes)"


class RegressionBlock(TransformBlock):
    """Numbers (a scalar or a fixed-length vector per item) as float tensors. ``n_out``: the number of values
    per item (default: taken from the first training value). Default loss: mean squared error.

    >>> box = RegressionBlock()
    >>> box.setup([[1.0, 2.0], [3.0, 4.0]])  # two numbers per item
    >>> box.n_out, box.encode([5, 6]), box.loss_func()
    (2, tensor([5., 6.]), MSELossFlat())
    """

    needs_setup = True

    def __init__(self, n_out: int | None = None):
        super().__init__()
        self._n_out = n_out

    def check(self, value: Any) -> None:
        try:
            t = torch.as_tensor(value, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"RegressionBlock needs numbers, got {value!r}") from None
        if not torch.isfinite(t).all():
            raise ValueError(f"RegressionBlock got a missing or infinite target {value!r}")

    def setup(self, values: Sequence[Any], example: Any = None) -> None:
        if not len(values):
            return
        for v in values[:1000]:
            self.check(v)
        n = torch.as_tensor(values[0], dtype=torch.float32).numel()
        if self._n_out is not None and self._n_out != n:
            raise ValueError(f"RegressionBlock(n_out={self._n_out}) but the targets have {n} values each")
        self._n_out = n

    def encode(self, value: Any) -> torch.Tensor:
        t = torch.as_tensor(value, dtype=torch.float32)
        if self._n_out is not None and t.numel() != self._n_out:
            raise ValueError(f"a regression target has {t.numel()} values, expected {self._n_out}")
        return t if t.ndim == 0 else t.flatten()

    def decode(self, x: Any) -> Any:
        x = torch.as_tensor(x)
        return float(x) if x.numel() == 1 else x

    @property
    def n_out(self) -> int | None:
        return self._n_out

    def loss_func(self) -> nn.Module:
        return MSELossFlat()

    def export_config(self) -> dict:
        return {"type": "RegressionBlock", "n_out": self._n_out}

    def __repr__(self) -> str:
        return f"RegressionBlock(n_out={self._n_out})"


BLOCK_TYPES: dict[str, Callable[..., TransformBlock]] = {
    "CategoryBlock": lambda c: CategoryBlock(c["vocab"]),
    "MultiCategoryBlock": lambda c: MultiCategoryBlock(c["vocab"], encoded=bool(c.get("encoded", False))),
    "RegressionBlock": lambda c: RegressionBlock(c.get("n_out")),
}


def block_from_config(config: dict) -> TransformBlock:
    """Rebuild a target block from its ``export_config()`` (for `load_learner`)."""
    kind = config.get("type")
    if kind not in BLOCK_TYPES:
        raise ValueError(f"unknown block type {kind!r} in an exported config (known: {sorted(BLOCK_TYPES)})")
    return BLOCK_TYPES[kind](config)
