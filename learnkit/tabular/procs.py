"""Tabular preprocessing: `Categorify`, `FillMissing`, `Normalize`.

A proc is fitted once on the **training rows** (``setup``) and then applied, unchanged, to every frame
(``encode``): training, validation, test and single-row predictions. Its fitted state is a JSON-able
dict (``state()`` / ``from_state``), which is what `learn.export()` stores — never a pickle.

Procs run in their ``order``, whatever the order of the list: the optional `Discretize` (5, in
`learnkit.tabular.discretize`) first, on
the raw values, then `FillMissing` (10), so that the ``<col>_bin`` / ``<col>_na`` columns they add are
categorified by `Categorify` (20), then `Normalize` (30), so that the statistics are those of the
filled values.

>>> import pandas as pd
>>> df = pd.DataFrame({"color": ["red", "blue", None], "size": [1.0, None, 3.0]})
>>> fm = FillMissing(); fm.setup(df, cat_names=["color"], cont_names=["size"])
>>> fm.encode(df)["size"].tolist(), fm.encode(df)["size_na"].tolist()
([1.0, 2.0, 3.0], [False, True, False])
>>> cat = Categorify(); cat.setup(df, cat_names=["color"], cont_names=["size"])
>>> cat.classes["color"], cat.encode(df)["color"].tolist()
(['#na#', 'blue', 'red'], [2, 1, 0])
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..core.registry import Registry
from ..core.vocab import NA_CLASS, CategoryMap

__all__ = ["TabularProc", "Categorify", "FillMissing", "Normalize", "PROC_REGISTRY", "register_proc",
           "proc_from_state", "NA_CLASS", "UnseenCategoryWarning"]


class UnseenCategoryWarning(UserWarning):
    """A categorical value the training rows never had (encoded as missing)."""


PROC_REGISTRY = Registry("tabular proc")


def register_proc(cls: type) -> type:
    """Class decorator: make a `TabularProc` subclass rebuildable from its exported state by class name.

    >>> @register_proc
    ... class Scale(TabularProc):
    ...     def __init__(self, factor=2.0):
    ...         self.factor = factor
    ...     def state(self):
    ...         return {"factor": self.factor}
    ...     @classmethod
    ...     def from_state(cls, state):
    ...         return cls(state["factor"])
    >>> proc_from_state("Scale", {"factor": 10.0}).factor     # what loading an exported learner does
    10.0
    """
    if not (isinstance(cls, type) and issubclass(cls, TabularProc)):
        raise TypeError(f"register_proc decorates TabularProc subclasses, got {cls!r}")
    return PROC_REGISTRY.register(cls)


def _json_scalar(v: Any) -> Any:
    """A plain Python scalar (int, float, str, bool) for a numpy/pandas value, so the state is JSON-able."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _lookup(classes: Sequence[Any], col: pd.Series) -> np.ndarray:
    """Position of each value of ``col`` in ``classes`` (``-1`` when missing or not there)."""
    return pd.Index(classes, dtype=object).get_indexer(col.astype(object)).astype(np.int64)


class TabularProc:
    """Base class: ``setup(train_df, cat_names, cont_names)`` fits, ``encode(df)`` applies (returns a new
    frame, never modifies the caller's), ``decode(df)`` undoes what can be undone, ``state()`` is JSON.

    ``setup`` may add columns: ``new_cat_names`` / ``new_cont_names`` list them after fitting.

    >>> class Clip(TabularProc):           # cap continuous columns at their training maximum
    ...     order = 15                      # after FillMissing (10), before Normalize (30)
    ...     def setup(self, df, cat_names, cont_names):
    ...         self.highs, self.fitted = {c: float(df[c].max()) for c in cont_names}, True
    ...     def encode(self, df):
    ...         return df.assign(**{c: df[c].clip(upper=h) for c, h in self.highs.items()})
    >>> clip = Clip(); clip.setup(pd.DataFrame({"age": [20, 60]}), [], ["age"])
    >>> clip.encode(pd.DataFrame({"age": [30, 99]}))["age"].tolist()
    [30, 60]
    """

    order: int = 50

    def setup(self, df: pd.DataFrame, cat_names: Sequence[str], cont_names: Sequence[str]) -> None:
        raise NotImplementedError

    def encode(self, df: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def decode(self, df: pd.DataFrame) -> pd.DataFrame:
        return df

    @property
    def new_cat_names(self) -> list[str]:
        return []

    @property
    def new_cont_names(self) -> list[str]:
        return []

    def state(self) -> dict[str, Any]:
        """The fitted state as JSON-able data (the constructor arguments included)."""
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TabularProc":
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted", False):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call setup(train_df, ...) first "
                               "(TabularDataLoaders does it on the training rows)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_proc
class Categorify(TabularProc):
    """Map each categorical column to integer codes: ``0`` is `NA_CLASS` (missing, or a category never
    seen in the training rows), ``1..n`` the training categories in sorted order.

    ``classes[col]`` is a `CategoryMap` (a list of the classes, with ``.o2i``: class → code).
    Unseen categories at inference map to 0 with a warning that names the column and the values; they
    never raise. ``max_card`` is not capped: every training category gets its own code.

    >>> df = pd.DataFrame({"color": ["red", "blue", "red"]})
    >>> cat = Categorify(); cat.setup(df, cat_names=["color"], cont_names=[])
    >>> cat.classes["color"], cat.cardinalities(), cat.decode(cat.encode(df))["color"].tolist()
    (['#na#', 'blue', 'red'], {'color': 3}, ['red', 'blue', 'red'])
    """

    order = 20

    def __init__(self) -> None:
        self.classes: dict[str, CategoryMap] = {}
        self.fitted = False

    def setup(self, df: pd.DataFrame, cat_names: Sequence[str], cont_names: Sequence[str]) -> None:
        self.classes = {}
        for name in cat_names:
            vals = pd.unique(df[name].dropna())
            vals = [_json_scalar(v) for v in vals]
            try:
                vals = sorted(set(vals))
            except TypeError:  # mixed types: a stable order all the same
                vals = sorted(set(vals), key=lambda v: (type(v).__name__, str(v)))
            self.classes[name] = CategoryMap([NA_CLASS] + vals)
        self.fitted = True

    def encode(self, df: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        df = df.copy()
        for name, classes in self.classes.items():
            col = df[name]
            codes = _lookup(classes[1:], col) + 1
            unseen = (codes == 0) & col.notna().to_numpy()
            if unseen.any():
                vals = pd.unique(col[unseen])[:5]
                warnings.warn(f"column {name!r}: {int(unseen.sum())} value(s) never seen in the training rows, "
                              f"e.g. {[_json_scalar(v) for v in vals]}; they are treated as missing ({NA_CLASS!r}).",
                              UnseenCategoryWarning, stacklevel=3)
            df[name] = codes
        return df

    def decode(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for name, classes in self.classes.items():
            if name in df.columns:
                df[name] = np.asarray(classes, dtype=object)[df[name].to_numpy(dtype=np.int64)]
        return df

    def cardinalities(self) -> dict[str, int]:
        """Number of codes per column (the `NA_CLASS` slot included): the embedding table sizes."""
        return {k: len(v) for k, v in self.classes.items()}

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"classes": self.classes}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Categorify":
        proc = cls()
        proc.classes = {k: CategoryMap(v) for k, v in state["classes"].items()}
        proc.fitted = True
        return proc


_FILL_STRATEGIES = ("median", "mean", "mode", "constant")


@register_proc
class FillMissing(TabularProc):
    """Fill missing values of continuous columns, and flag them.

    Args:
        fill_strategy: ``"median"`` (default), ``"mean"``, ``"mode"`` or ``"constant"`` (``fill_value``),
            computed on the training rows.
        fill_value: the value for ``"constant"``.
        add_col: add a boolean ``<col>_na`` categorical column for every continuous column that had
            missing values in the training rows.

    Every continuous column gets a fill value, so a value missing only at inference is filled too (its
    flag column exists only if the training rows had missing values in that column).

    >>> df = pd.DataFrame({"size": [1.0, None, 3.0, 8.0], "age": [5.0, 6.0, 7.0, 8.0]})
    >>> fm = FillMissing(fill_strategy="mean"); fm.setup(df, cat_names=[], cont_names=["size", "age"])
    >>> fm.fill_vals, fm.new_cat_names, fm.encode(pd.DataFrame({"size": [None], "age": [None]})).values.tolist()
    ({'size': 4.0, 'age': 6.5}, ['size_na'], [[4.0, 6.5, True]])
    """

    order = 10

    def __init__(self, fill_strategy: str = "median", fill_value: float = 0.0, add_col: bool = True) -> None:
        if fill_strategy not in _FILL_STRATEGIES:
            raise ValueError(f"fill_strategy must be one of {_FILL_STRATEGIES}, got {fill_strategy!r}")
        self.fill_strategy, self.fill_value, self.add_col = fill_strategy, float(fill_value), bool(add_col)
        self.fill_vals: dict[str, float] = {}
        self.na_cols: list[str] = []
        self.fitted = False

    def _fill_for(self, col: pd.Series) -> float:
        col = col.dropna()
        if self.fill_strategy == "constant" or col.empty:
            return self.fill_value
        if self.fill_strategy == "median":
            return float(col.median())
        if self.fill_strategy == "mean":
            return float(col.mean())
        return float(col.mode().iloc[0])

    def setup(self, df: pd.DataFrame, cat_names: Sequence[str], cont_names: Sequence[str]) -> None:
        self.fill_vals = {name: self._fill_for(df[name]) for name in cont_names}
        self.na_cols = [name for name in cont_names if self.add_col and df[name].isna().any()]
        self.fitted = True

    @property
    def new_cat_names(self) -> list[str]:
        return [f"{name}_na" for name in self.na_cols]

    def encode(self, df: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        df = df.copy()
        for name in self.na_cols:
            df[f"{name}_na"] = df[name].isna().to_numpy()
        for name, v in self.fill_vals.items():
            df[name] = df[name].fillna(v)
        return df

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"fill_strategy": self.fill_strategy, "fill_value": self.fill_value, "add_col": self.add_col,
                "fill_vals": self.fill_vals, "na_cols": self.na_cols}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "FillMissing":
        proc = cls(state["fill_strategy"], state["fill_value"], state["add_col"])
        proc.fill_vals = {k: float(v) for k, v in state["fill_vals"].items()}
        proc.na_cols = list(state["na_cols"])
        proc.fitted = True
        return proc

    def __repr__(self) -> str:
        return f"FillMissing(fill_strategy={self.fill_strategy!r}, add_col={self.add_col})"


@register_proc
class Normalize(TabularProc):
    """Standardise continuous columns with the mean and standard deviation of the training rows
    (a column with zero spread is only centred).

    >>> df = pd.DataFrame({"age": [20.0, 30.0, 40.0], "const": [1.0, 1.0, 1.0]})
    >>> norm = Normalize(); norm.setup(df, cat_names=[], cont_names=["age", "const"])
    >>> out = norm.encode(df); out["age"].round(3).tolist(), out["const"].tolist(), norm.decode(out)["age"].tolist()
    ([-1.225, 0.0, 1.225], [0.0, 0.0, 0.0], [20.0, 30.0, 40.0])
    """

    order = 30

    def __init__(self) -> None:
        self.means: dict[str, float] = {}
        self.stds: dict[str, float] = {}
        self.fitted = False

    def setup(self, df: pd.DataFrame, cat_names: Sequence[str], cont_names: Sequence[str]) -> None:
        self.means, self.stds = {}, {}
        for name in cont_names:
            col = df[name].astype(np.float64)
            m, s = float(col.mean()), float(col.std(ddof=0))
            self.means[name] = 0.0 if math.isnan(m) else m
            self.stds[name] = s if s > 1e-12 and not math.isnan(s) else 1.0
        self.fitted = True

    def encode(self, df: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        df = df.copy()
        for name in self.means:
            df[name] = (df[name].astype(np.float64) - self.means[name]) / self.stds[name]
        return df

    def decode(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for name in self.means:
            if name in df.columns:
                df[name] = df[name].astype(np.float64) * self.stds[name] + self.means[name]
        return df

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"means": self.means, "stds": self.stds}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Normalize":
        proc = cls()
        proc.means = {k: float(v) for k, v in state["means"].items()}
        proc.stds = {k: float(v) for k, v in state["stds"].items()}
        proc.fitted = True
        return proc


def proc_from_state(name: str, state: dict[str, Any]) -> TabularProc:
    """Rebuild a fitted proc from its class name and `TabularProc.state` (only registered procs)."""
    return PROC_REGISTRY.lookup(name).from_state(state)
