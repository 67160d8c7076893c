"""The everyday names a fastai lesson uses without importing them: ``torch``, ``nn``, ``F``, ``np``, ``pd``, ``plt``,
``Path``, ``Image``, ``array``, ``DataLoader`` (torch's), ``tensor``, ``first``, ...

fastai's ``from fastai.vision.all import *`` hands a notebook these names, so fastbook's code calls ``nn.Conv2d``,
``F.cross_entropy``, ``tensor([1, 2])`` or ``first(dls.valid)`` with no import of its own. Every learnkit namespace
re-exports them, so such a lesson ports by changing its import line only.

``plt`` (matplotlib.pyplot) is served on first use through :func:`lesson_attr`, so importing learnkit does not load
matplotlib or pick a plotting backend.

>>> from learnkit.vision import *
>>> tensor([[1, 2], [3, 4]]).shape, first([7, 8, 9])
(torch.Size([2, 2]), 7)
"""
from __future__ import annotations

import importlib
import math
import os
import random
import re
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from numpy import array
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader

__all__ = ["torch", "nn", "F", "Tensor", "np", "pd", "plt", "Path", "partial", "Image", "math", "os", "random", "re",
           "array", "DataLoader", "tensor", "first", "noop"]

#: names served on first use (module attribute -> the module that provides it)
LAZY_NAMES = {"plt": "matplotlib.pyplot"}

T = TypeVar("T")


def lesson_attr(name: str, namespace: str) -> Any:
    """The lazily served lesson name ``name`` (for a namespace's module-level ``__getattr__``).

    Raises ``AttributeError`` for any other name, so that Python's normal lookup of submodules and the error a typo
    gets stay unchanged.

    >>> lesson_attr("plt", "learnkit").__name__
    'matplotlib.pyplot'
    """
    if name in LAZY_NAMES:
        return importlib.import_module(LAZY_NAMES[name])
    raise AttributeError(f"module {namespace!r} has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    return lesson_attr(name, __name__)


def tensor(x: Any, *rest: Any, dtype: torch.dtype | None = None) -> Tensor:
    """A tensor from a number, a list, a NumPy array, a pandas object, a PIL image or a tensor.

    ``tensor(1, 2, 3)`` is ``tensor([1, 2, 3])``. Float64 data (NumPy's and pandas' default) becomes float32, the
    dtype models train in; pass ``dtype`` to choose another. A PIL image becomes its pixel array (height, width[,
    channels]) as ``uint8``, the way fastbook reads digits with ``tensor(Image.open(path))``.

    >>> tensor([[-1, -1], [1, 1]]).float()
    tensor([[-1., -1.],
            [ 1.,  1.]])
    >>> tensor(np.zeros(3)).dtype
    torch.float32
    """
    if rest:
        x = [x, *rest]
    if isinstance(x, Tensor):
        out = x
    elif isinstance(x, (pd.DataFrame, pd.Series)):
        out = torch.from_numpy(np.array(x.to_numpy(), copy=True))
    elif isinstance(x, (np.ndarray, Image.Image)):
        out = torch.from_numpy(np.array(x, copy=True))
    else:
        try:
            out = torch.tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"tensor() cannot make a tensor from {type(x).__name__} {str(x)[:60]!r}: pass numbers, "
                            "(nested) lists of numbers, a NumPy array, a pandas object or a PIL image") from exc
    if dtype is not None:
        return out.to(dtype)
    return out.float() if out.dtype == torch.float64 else out


def first(items: Iterable[T], f: Callable[[T], bool] | None = None) -> T | None:
    """The first element of ``items`` (the first batch of a DataLoader), or the first for which ``f`` is true;
    ``None`` when there is none.

    >>> first([3, 4, 5]), first([3, 4, 5], lambda x: x % 2 == 0), first([])
    (3, 4, None)
    """
    return next(iter(items) if f is None else filter(f, items), None)


def noop(x: Any = None, *args: Any) -> Any:
    """``x`` itself: the identity, where a lesson needs a layer or a function that does nothing (fastbook ch. 14's
    ``self.idconv = noop if ni == nf else ConvLayer(ni, nf, 1)``).

    >>> noop(3), noop()
    (3, None)
    """
    return x
