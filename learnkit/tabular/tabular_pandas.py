"""`TabularPandas`: a table with its procs fitted on the training rows, split into ``.train`` / ``.valid``.

fastai's object of the same name, on learnkit's `TabularProcessor`: ``to.train.xs`` / ``to.train.y`` feed
scikit-learn (random forests, ch. 9), ``to.dataloaders(bs)`` feeds a `tabular_learner`.
`TabularDataLoaders.from_df` is built on it, so both paths process a table the same way.

>>> import pandas as pd
>>> df = pd.DataFrame({"job": ["a", "b"] * 10, "age": [float(i) for i in range(20)], "y": ["no", "yes"] * 10})
>>> to = TabularPandas(df, [Categorify, FillMissing, Normalize], cat_names=["job"], cont_names=["age"],
...                    y_names="y", splits=(list(range(16)), list(range(16, 20))))
>>> len(to.train), len(to.valid), list(to.train.xs.columns), to.classes["job"].o2i["b"]
(16, 4, ['job', 'age'], 2)
>>> dls = to.dataloaders(bs=8, device="cpu")
>>> [tuple(t.shape) for t in dls.one_batch()]
[(8, 1), (8, 1), (8,)]

New rows go through the fitted procs with ``to.new(df)`` then ``.process()`` (fastbook ch. 9):

>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:   # "zzz" was never seen: it warns, and becomes #na#
...     warnings.simplefilter("always")
...     test = to.new(pd.DataFrame({"job": ["b", "zzz"], "age": [0.0, 19.0]})).process()
>>> [w.category.__name__ for w in caught], test.xs["job"].tolist()
(['UnseenCategoryWarning'], [2, 0])
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..core.split import check_split
from ..core.vocab import CategoryMap
from .processor import ProcSpec, TabularProcessor
from .procs import Categorify, UnseenCategoryWarning
from .show import display_df
from .table import TabularLoader, TabularTensors

if TYPE_CHECKING:
    from .data import TabularDataLoaders

__all__ = ["TabularPandas", "TabularSplit"]

_BLOCK_NAMES = {"CategoryBlock": "classification", "MultiCategoryBlock": "classification",
                "RegressionBlock": "regression"}


def _y_block_name(y_block: Any) -> str | None:
    """``"classification"``/``"regression"``/``None`` from a string or a fastai-style block (by class name)."""
    if y_block is None or isinstance(y_block, str):
        return y_block
    name = y_block.__name__ if isinstance(y_block, type) else type(y_block).__name__
    if name not in _BLOCK_NAMES:
        raise ValueError(f"y_block must be 'classification', 'regression', CategoryBlock or RegressionBlock, "
                         f"got {y_block!r}")
    return _BLOCK_NAMES[name]


class TabularSplit:
    """One split of a `TabularPandas`: its processed rows as tensors and as frames.

    ``xs``: the processed inputs (category codes and normalised continuous columns), indexed like the
    original rows; ``ys`` / ``y``: the target(s) (class codes, or values) as a frame / a Series.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"job": ["a", "b", "a", "b"], "age": [20.0, 30.0, 40.0, 50.0], "y": ["no", "yes", "no", "yes"]})
    >>> to = TabularPandas(df, cat_names="job", cont_names="age", y_names="y", splits=([0, 1, 2], [3]))
    >>> to.valid
    TabularSplit(rows=1, cat_names=['job'], cont_names=['age'])
    >>> to.train.y.tolist(), to.valid.decode()[["job", "y"]].values.tolist()     # class codes; the decoded rows
    ([0, 1, 0], [['b', 'yes']])
    """

    def __init__(self, tensors: TabularTensors, index: pd.Index, processor: TabularProcessor):
        self.tensors, self.index, self.procs = tensors, index, processor

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def xs(self) -> pd.DataFrame:
        cats = pd.DataFrame(self.tensors.cats.cpu().numpy(), columns=self.procs.cat_names, index=self.index)
        conts = pd.DataFrame(self.tensors.conts.cpu().numpy(), columns=self.procs.cont_names, index=self.index)
        return pd.concat([cats, conts], axis=1)

    @property
    def ys(self) -> pd.DataFrame:
        if self.tensors.ys is None:
            return pd.DataFrame(index=self.index)
        y = self.tensors.ys.cpu().numpy()
        return pd.DataFrame(y.reshape(len(y), len(self.procs.y_names)), columns=self.procs.y_names, index=self.index)

    @property
    def y(self) -> pd.Series:
        """The first target column (fastai's ``to.train.y``)."""
        ys = self.ys
        if ys.shape[1] == 0:
            raise AttributeError("this table has no target (y_names was empty)")
        return ys.iloc[:, 0]

    @property
    def items(self) -> pd.DataFrame:
        """``xs`` and ``ys`` side by side: the processed rows."""
        return pd.concat([self.xs, self.ys], axis=1)

    def decode(self) -> pd.DataFrame:
        """The rows as the model sees them, readable: category names, continuous values in their units."""
        df = self.procs.decode(self.tensors.cats, self.tensors.conts)
        df.index = self.index
        if self.tensors.ys is not None:
            dec = self.procs.decode_target(self.tensors.ys)
            if len(self.procs.y_names) == 1:
                df[self.procs.y_names[0]] = dec
            else:
                for j, name in enumerate(self.procs.y_names):
                    df[name] = [row[j] for row in dec]
        return df

    def show(self, max_n: int = 10, show: bool = True) -> pd.DataFrame:
        """Show (and return) the first ``max_n`` rows, decoded."""
        return display_df(self.decode().iloc[:max_n], show=show)

    def __repr__(self) -> str:
        return f"TabularSplit(rows={len(self)}, cat_names={self.procs.cat_names}, cont_names={self.procs.cont_names})"


class TabularPandas:
    """Fit ``procs`` on the training rows of ``df`` and process both splits.

    Args:
        df: the table (not modified).
        procs: proc classes or instances (default ``[Categorify, FillMissing, Normalize]``).
        cat_names / cont_names: the categorical / continuous columns (see `cont_cat_split`).
        y_names: the target column(s); empty for unlabelled data.
        y_block: ``"classification"``, ``"regression"`` (fastai's ``CategoryBlock()`` /
            ``RegressionBlock()`` are accepted too) or ``None``: float targets are regression, anything
            else classification.
        splits: ``(train_idx, valid_idx)``, positions of rows of ``df`` (e.g.
            ``RandomSplitter()(range_of(df))``); ``None`` puts every row in ``train`` and none in ``valid``.
        na_values: values that mean "missing" (compared after stripping spaces), e.g. ``["?"]``.
        strip: strip spaces around text values.

    Rows whose target is missing are dropped, with a warning that gives their count. Regression targets
    are ``[N, n_targets]`` (``[B, 1]`` batches for one target, as fastai).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"job": ["a", "b", None, "b"], "age": [20.0, None, 40.0, 30.0], "y": [0.5, 1.5, 1.0, 2.0]})
    >>> to = TabularPandas(df, cat_names="job", cont_names="age", y_names="y", splits=([0, 1, 2], [3]))
    >>> to.cat_names, to.cont_names, to.train.xs.shape, to.valid.y.tolist()   # float target: regression
    (['job', 'age_na'], ['age'], (3, 3), [2.0])
    """

    def __init__(self, df: pd.DataFrame, procs: Sequence[ProcSpec] | None = None,
                 cat_names: str | Sequence[str] | None = None, cont_names: str | Sequence[str] | None = None,
                 y_names: str | Sequence[str] | None = None, y_block: Any = None,
                 splits: tuple[Sequence[int], Sequence[int]] | None = None,
                 na_values: Sequence[Any] | None = None, strip: bool = True):
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise ValueError("the table is empty")
        self.procs = TabularProcessor(cat_names, cont_names, y_names, procs=procs, y_block=_y_block_name(y_block),
                                      na_values=na_values, strip=strip)
        self.procs.check_columns(df, with_labels=True)
        if splits is None:
            train_idx, valid_idx = list(range(len(df))), []
        else:
            if len(splits) != 2:
                raise ValueError(f"splits must be (train_idx, valid_idx), got {len(splits)} lists")
            train_idx, valid_idx = [int(i) for i in splits[0]], [int(i) for i in splits[1]]
            bad = [i for i in train_idx + valid_idx if not 0 <= i < len(df)]
            if bad:
                raise IndexError(f"splits hold positions {bad[:5]} outside the table's {len(df)} rows; "
                                 "splits are 0-based positions (use range_of(df)), not index labels")
        allow_empty = len(valid_idx) == 0
        targets = self.procs.clean_target(df) if self.procs.y_names else None
        if targets is not None:
            missing = targets.isna().any(axis=1).to_numpy()
            if missing.any():
                bad = np.flatnonzero(missing)
                warnings.warn(f"dropped {len(bad)} of {len(df)} rows whose target {self.procs.y_names} is missing "
                              f"(e.g. rows {bad[:5].tolist()})", stacklevel=2)
                train_idx = [i for i in train_idx if not missing[i]]
                valid_idx = [i for i in valid_idx if not missing[i]]
        check_split(train_idx, valid_idx, allow_empty_valid=allow_empty, what="rows")
        train = self.procs.fit(df.iloc[train_idx])
        if targets is not None and self.procs.y_block == "classification":
            check_split(train_idx, valid_idx, labels=targets.iloc[:, 0].tolist(), allow_empty_valid=allow_empty,
                        what="rows")
        with warnings.catch_warnings():  # rare categories that fall only in the validation rows are expected
            warnings.simplefilter("ignore", UnseenCategoryWarning)  # there; predict and test_dl still warn
            labelled = bool(self.procs.y_names)
            valid = self.procs.process(df.iloc[valid_idx], with_labels=labelled) if valid_idx else \
                _empty_like(train)
        self.splits = (train_idx, valid_idx)
        self._raw: pd.DataFrame | None = None
        self._with_labels = bool(self.procs.y_names)
        self._train: TabularSplit | None = TabularSplit(train, df.index[train_idx], self.procs)
        self._valid: TabularSplit | None = TabularSplit(valid, df.index[valid_idx], self.procs)

    # --- new rows through the fitted procs (fastai's ``to.new(df)`` then ``to_new.process()``) ------------
    def new(self, df: pd.DataFrame, with_labels: bool | None = None) -> "TabularPandas":
        """A table of the rows of ``df`` that shares this table's fitted procs: nothing is refitted, so
        categories unseen here become ``#na#`` (code 0) and continuous columns are filled and normalised
        with this table's training statistics. It is unprocessed until ``.process()`` is called; then
        every row is in ``.train`` (``.valid`` is empty) and ``.xs`` / ``.ys`` / ``.items`` give them.

        ``with_labels``: whether ``df`` carries the target (``None``: when it has every ``y_names`` column;
        labelled new rows must have targets the training rows know).

        >>> df = pd.DataFrame({"c": ["a", "b"] * 4, "x": [1.0, 3.0] * 4, "y": ["n", "y"] * 4})
        >>> to = TabularPandas(df, cat_names="c", cont_names="x", y_names="y")
        >>> new = to.new(pd.DataFrame({"c": ["b", "a"], "x": [3.0, 5.0]}))
        >>> new.processed, len(new)
        (False, 2)
        >>> new.process().xs.values.tolist()     # x: (x - 2) / 1, the training rows' mean and std
        [[2.0, 1.0], [1.0, 3.0]]
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"new takes a pandas DataFrame, got {type(df).__name__}")
        if with_labels is None:
            with_labels = bool(self.procs.y_names) and all(n in df.columns for n in self.procs.y_names)
        elif with_labels and not self.procs.y_names:
            raise ValueError("with_labels=True but this table has no target (y_names is empty)")
        self.procs.check_columns(df, with_labels=bool(with_labels))
        out = object.__new__(type(self))
        out.procs, out.splits, out._raw, out._with_labels = self.procs, (list(range(len(df))), []), df, bool(with_labels)
        out._train = out._valid = None
        return out

    @property
    def processed(self) -> bool:
        """``False`` for a table from `new` until `process` has run."""
        return self._train is not None

    def process(self) -> "TabularPandas":
        """Apply the fitted procs to the rows of a table from `new` (a no-op once processed); returns it.

        Unseen categories warn (`UnseenCategoryWarning`) and become ``#na#``."""
        if self._train is None:
            tensors = self.procs.process(self._raw, with_labels=self._with_labels)
            self._train = TabularSplit(tensors, self._raw.index, self.procs)
            self._valid = TabularSplit(_empty_like(tensors), self._raw.index[:0], self.procs)
        return self

    def _split(self, split: TabularSplit | None) -> TabularSplit:
        if split is None:
            raise RuntimeError("this table from TabularPandas.new is not processed yet: call .process() first")
        return split

    @property
    def train(self) -> TabularSplit:
        """The training rows (for a table from `new`: all its rows)."""
        return self._split(self._train)

    @property
    def valid(self) -> TabularSplit:
        """The validation rows (empty for a table from `new`)."""
        return self._split(self._valid)

    # --- fastai's attribute names --------------------------------------------------------------------
    @property
    def cat_names(self) -> list[str]:
        return self.procs.cat_names

    @property
    def cont_names(self) -> list[str]:
        return self.procs.cont_names

    @property
    def y_names(self) -> list[str]:
        return self.procs.y_names

    @property
    def vocab(self) -> list[Any] | None:
        """The target classes (classification) or ``None``."""
        return self.procs.vocab

    @property
    def classes(self) -> dict[str, CategoryMap]:
        """``{column: CategoryMap}`` for the categorical columns (code 0 is ``#na#``)."""
        cat = next((p for p in self.procs.procs if isinstance(p, Categorify)), None)
        return dict(cat.classes) if cat is not None else {}

    @property
    def xs(self) -> pd.DataFrame:
        return pd.concat([self.train.xs, self.valid.xs])

    @property
    def ys(self) -> pd.DataFrame:
        return pd.concat([self.train.ys, self.valid.ys])

    @property
    def items(self) -> pd.DataFrame:
        """Every processed row (training rows first)."""
        return pd.concat([self.train.items, self.valid.items])

    def __len__(self) -> int:
        return len(self._raw) if self._train is None else len(self.train) + len(self.valid)

    def show(self, max_n: int = 10, show: bool = True) -> pd.DataFrame:
        """Show (and return) the first ``max_n`` training rows, decoded."""
        return self.train.show(max_n, show=show)

    def dataloaders(self, bs: int = 64, val_bs: int | None = None, shuffle: bool = True, drop_last: bool = True,
                    seed: int | None = 42, path: str | Path = ".",
                    device: str | torch.device | None = None) -> "TabularDataLoaders":
        """`TabularDataLoaders` over the two splits (``val_bs`` defaults to ``2 * bs``; the training loader
        shuffles with its own generator seeded by ``seed``)."""
        from .data import TabularDataLoaders
        if not self.procs.y_names:
            raise ValueError("this table has no target (y_names): a learner needs one; use "
                             "dls.test_dl(df) for unlabelled rows")
        train_dl = TabularLoader(self.train.tensors, bs, shuffle=shuffle, drop_last=drop_last, seed=seed)
        valid_dl = TabularLoader(self.valid.tensors, val_bs or 2 * bs) if len(self.valid) else None
        return TabularDataLoaders(train_dl, valid_dl, self.procs, path=path, device=device, bs=bs)

    def __repr__(self) -> str:
        if not self.processed:
            return f"TabularPandas(rows={len(self)}, not processed: call .process(), cat_names={self.cat_names})"
        return (f"TabularPandas(train={len(self.train)}, valid={len(self.valid)}, cat_names={self.cat_names}, "
                f"cont_names={self.cont_names}, y_names={self.y_names}, y_block={self.procs.y_block!r})")


def _empty_like(t: TabularTensors) -> TabularTensors:
    return t.subset(slice(0, 0))
