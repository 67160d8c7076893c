"""Splitters: functions of the items that return ``(train_idx, valid_idx)``.

The automatic split is ``RandomSplitter(valid_pct=0.2, seed=42)``: a permutation drawn from a private
``torch.Generator``, so the same items give the same split on every run, process and machine.

>>> RandomSplitter(valid_pct=0.2, seed=42)(range(10))[1]
[2, 6]
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "RandomSplitter", "GrandparentSplitter", "FolderSplitter", "ColSplitter", "IndexSplitter",
    "FuncSplitter", "TrainTestSplitter", "EndSplitter", "check_split", "as_indices",
]

Split = tuple[list[int], list[int]]


class RandomSplitter:
    """Put a random ``valid_pct`` of the items in the validation set (``int(valid_pct * n)`` items).

    ``valid_pct=0`` means no validation set. ``seed=None`` draws a fresh split each call.

    >>> train, valid = RandomSplitter(valid_pct=0.25, seed=0)(list("abcdefgh"))
    >>> len(train), len(valid)
    (6, 2)
    >>> RandomSplitter(0.25, seed=0)(range(8)) == (train, valid)  # the same seed, the same split
    True
    """

    def __init__(self, valid_pct: float = 0.2, seed: int | None = 42):
        if not 0 <= valid_pct < 1:
            raise ValueError(f"valid_pct must be in [0, 1), got {valid_pct!r}")
        self.valid_pct, self.seed = valid_pct, seed

    def __call__(self, items: Sequence[Any]) -> Split:
        n = len(items)
        g = torch.Generator()
        g.manual_seed(self.seed if self.seed is not None else int(torch.randint(0, 2**62, ()).item()))
        perm = torch.randperm(n, generator=g).tolist()
        n_valid = int(self.valid_pct * n)
        return sorted(perm[n_valid:]), sorted(perm[:n_valid])

    def __repr__(self) -> str:
        return f"RandomSplitter(valid_pct={self.valid_pct}, seed={self.seed})"


class GrandparentSplitter:
    """Split paths by the name of their grandparent folder (``train/cat/1.jpg`` → ``train``).

    >>> files = ["data/train/cat/1.jpg", "data/val/cat/2.jpg", "data/train/dog/3.jpg", "data/test/dog/4.jpg"]
    >>> GrandparentSplitter(valid_name="val")(files)  # the test image is in neither set
    ([0, 2], [1])
    """

    def __init__(self, train_name: str = "train", valid_name: str = "valid"):
        self.train_name, self.valid_name = train_name, valid_name

    def __call__(self, items: Sequence[str | Path]) -> Split:
        return _split_by_folder(items, self.train_name, self.valid_name, level=2)


class FolderSplitter:
    """Split paths by the name of any ancestor folder ``train_name`` / ``valid_name`` (nearest first).

    >>> files = ["data/train/cat/1.jpg", "data/valid/2024/cat/2.jpg", "data/train/2024/dog/3.jpg"]
    >>> FolderSplitter()(files)  # any ancestor named train or valid, at any depth
    ([0, 2], [1])
    """

    def __init__(self, train_name: str = "train", valid_name: str = "valid"):
        self.train_name, self.valid_name = train_name, valid_name

    def __call__(self, items: Sequence[str | Path]) -> Split:
        return _split_by_folder(items, self.train_name, self.valid_name, level=None)


def _split_by_folder(items, train_name, valid_name, level):
    train, valid = [], []
    for i, p in enumerate(items):
        parents = [q.name for q in Path(p).parents]
        names = parents[level - 1: level] if level else parents
        if valid_name in names and (train_name not in names or names.index(valid_name) < names.index(train_name)):
            valid.append(i)
        elif train_name in names:
            train.append(i)
    return train, valid


class ColSplitter:
    """Split a DataFrame by a boolean column, by name or position (``True`` = validation).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"text": ["a", "b", "c", "d"], "is_valid": [False, True, False, True]})
    >>> ColSplitter("is_valid")(df)
    ([0, 2], [1, 3])
    """

    def __init__(self, col: str | int = "is_valid"):
        self.col = col

    def __call__(self, df) -> Split:
        import pandas as pd
        if isinstance(self.col, int) and not isinstance(self.col, bool):
            if not -df.shape[1] <= self.col < df.shape[1]:
                raise IndexError(f"valid column index {self.col} is out of range; the columns are {list(df.columns)}")
            col = df.iloc[:, self.col]
        elif self.col not in df.columns:
            raise KeyError(f"valid column {self.col!r} not found; the columns are {list(df.columns)}")
        else:
            col = df[self.col]
        if col.dtype == object or pd.api.types.is_string_dtype(col):  # 'True'/'False' read as text (a CSV)
            col = col.astype(str).str.strip().str.lower().map({"true": True, "1": True, "false": False, "0": False})
            if col.isna().any():
                bad = df[self.col][col.isna()].iloc[0]
                raise ValueError(f"valid column {self.col!r} must hold booleans; found {bad!r}")
        mask = col.astype(bool).to_numpy()
        return [i for i, m in enumerate(mask) if not m], [i for i, m in enumerate(mask) if m]


class IndexSplitter:
    """Use the given indices as the validation set, the rest as training.

    >>> IndexSplitter([0, -1])(range(5))  # negative indices count from the end
    ([1, 2, 3], [0, 4])
    """

    def __init__(self, valid_idx: Sequence[int]):
        self.valid_idx = [int(i) for i in valid_idx]

    def __call__(self, items: Sequence[Any]) -> Split:
        n = len(items)
        bad = [i for i in self.valid_idx if not -n <= i < n]
        if bad:
            raise IndexError(f"valid_idx has {len(bad)} indices outside 0..{n - 1}, e.g. {bad[0]}")
        valid = sorted({i % n for i in self.valid_idx})
        vs = set(valid)
        return [i for i in range(n) if i not in vs], valid


class FuncSplitter:
    """Items for which ``func(item)`` is true go to the validation set.

    >>> FuncSplitter(lambda path: "2024" in path)(["2023/a.jpg", "2024/b.jpg", "2023/c.jpg"])
    ([0, 2], [1])
    """

    def __init__(self, func: Callable[[Any], bool]):
        self.func = func

    def __call__(self, items: Sequence[Any]) -> Split:
        flags = [bool(self.func(o)) for o in items]
        return [i for i, f in enumerate(flags) if not f], [i for i, f in enumerate(flags) if f]


class TrainTestSplitter:
    """scikit-learn's ``train_test_split`` on the item indices: ``test_size`` of them (a fraction or a count) go
    to validation; ``stratify`` (one label per item) keeps the class proportions in both sets.

    >>> TrainTestSplitter(test_size=0.5, random_state=0, stratify=[0, 0, 1, 1])(range(4))[1]
    [0, 3]
    """

    def __init__(self, test_size: float | int = 0.2, random_state: int | None = 42,
                 stratify: Sequence[Any] | None = None, shuffle: bool = True):
        self.test_size, self.random_state, self.stratify, self.shuffle = test_size, random_state, stratify, shuffle

    def __call__(self, items: Sequence[Any]) -> Split:
        from sklearn.model_selection import train_test_split
        idx = list(range(len(items)))
        if self.stratify is not None and len(self.stratify) != len(idx):
            raise ValueError(f"stratify has {len(self.stratify)} labels but there are {len(idx)} items")
        train, valid = train_test_split(idx, test_size=self.test_size, random_state=self.random_state,
                                        shuffle=self.shuffle, stratify=self.stratify)
        return sorted(train), sorted(valid)


class EndSplitter:
    """The last ``valid_pct`` of the items (the first, with ``valid_last=False``) are the validation set.

    >>> EndSplitter(0.25)(range(8))
    ([0, 1, 2, 3, 4, 5], [6, 7])
    """

    def __init__(self, valid_pct: float = 0.2, valid_last: bool = True):
        if not 0 <= valid_pct < 1:
            raise ValueError(f"valid_pct must be in [0, 1), got {valid_pct!r}")
        self.valid_pct, self.valid_last = valid_pct, valid_last

    def __call__(self, items: Sequence[Any]) -> Split:
        n = len(items)
        n_valid = int(self.valid_pct * n)
        idx = list(range(n))
        if self.valid_last:
            return idx[: n - n_valid], idx[n - n_valid:]
        return idx[n_valid:], idx[:n_valid]


def as_indices(idx: Any, which: str = "training") -> list[int]:
    """The ``which`` set of a split as a list of ``int`` indices. A boolean mask (one ``True``/``False`` per
    item), or anything else than integers, raises a ``ValueError`` that says indices are expected.

    >>> as_indices(np.array([0, 3]))
    [0, 3]
    >>> as_indices([True, False, True])
    Traceback (most recent call last):
    ...
    ValueError: the splitter returned a boolean mask for the training set (True/False per item); expected indices: ...
    """
    vals = idx.tolist() if isinstance(idx, (np.ndarray, torch.Tensor)) else list(idx)
    if vals and all(isinstance(v, (bool, np.bool_)) for v in vals):
        raise ValueError(f"the splitter returned a boolean mask for the {which} set (True/False per item); expected "
                         "indices: return (train_idx, valid_idx) lists of integer positions, e.g. "
                         "np.flatnonzero(~mask), np.flatnonzero(mask)")
    bad = next((v for v in vals if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))), None)
    if bad is not None:
        raise ValueError(f"the splitter returned {bad!r} ({type(bad).__name__}) in the {which} set; expected indices: "
                         "integer positions of the items")
    return [int(v) for v in vals]


def check_split(train_idx: Sequence[int], valid_idx: Sequence[int], labels: Sequence[Any] | None = None,
                allow_empty_valid: bool = False, what: str = "items") -> None:
    """Raise a clear error when a split is unusable; warn-free when it is fine.

    Checks: an empty training set, an empty validation set (unless allowed), an item in both, and (with
    ``labels``) a class that appears only in the validation set.

    >>> check_split([0, 1, 2], [3], labels=["cat", "dog", "cat", "dog"])  # fine: returns None
    >>> check_split([0, 1, 2], [3], labels=["cat", "dog", "cat", "bird"])
    Traceback (most recent call last):
    ...
    ValueError: class(es) ['bird'] appear only in the validation set, so the model can never learn them; ...
    """
    train_idx, valid_idx = as_indices(train_idx, "training"), as_indices(valid_idx, "validation")
    if len(train_idx) == 0:
        raise ValueError(f"the split left the training set empty ({len(valid_idx)} {what} in validation); "
                         "check the folder names, valid column or valid_pct.")
    if len(valid_idx) == 0 and not allow_empty_valid:
        raise ValueError(f"the split left the validation set empty ({len(train_idx)} {what} in training); "
                         "check the folder names / valid column, or pass valid_pct=0 to train without validation.")
    both = set(train_idx) & set(valid_idx)
    if both:
        raise ValueError(f"{len(both)} {what} are in both the training and validation sets, e.g. index {min(both)}")
    if labels is not None and len(valid_idx):
        train_classes = {labels[i] for i in train_idx}
        only_valid = sorted({labels[i] for i in valid_idx} - train_classes, key=str)
        if only_valid:
            raise ValueError(f"class(es) {only_valid[:5]} appear only in the validation set, so the model can never "
                             "learn them; add training examples or change the split.")
