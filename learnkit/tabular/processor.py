"""`TabularProcessor`: a table's columns, its cleaning rules, its fitted procs and its target, turned
into tensors.

One object does the whole road from a pandas frame to model inputs, and back:

1. **check** the columns (unknown names → an error listing the real columns);
2. **clean** (``clean``): strip the spaces around text values of categorical and target columns, turn
   the declared missing markers (``na_values``, e.g. ``["?"]`` for Adult) into missing values, and parse
   continuous columns as numbers (a non-numeric value → an error naming the column, row and value);
3. **procs** (fitted on the training rows only, then frozen): `FillMissing`, `Categorify`, `Normalize`;
4. **target**: classes (vocab from the training rows) or float values;
5. **tensors** (`TabularTensors`): cat codes ``int64 [N, n_cat]``, continuous ``float32 [N, n_cont]``,
   target ``int64 [N]`` (classification) or ``float32 [N]`` / ``[N, n_y]`` (regression).

Its fitted state is JSON (``state()`` / ``from_state``): that is what `learn.export()` stores.

>>> import pandas as pd
>>> df = pd.DataFrame({"job": [" a", "b", "?"], "age": [20, None, 40], "y": ["no", "yes", "no"]})
>>> tp = TabularProcessor(["job"], ["age"], "y", na_values=["?"])
>>> t = tp.fit(df)
>>> t.cats.tolist(), tp.cat_names, tp.vocab
([[1, 1], [2, 2], [0, 1]], ['job', 'age_na'], ['no', 'yes'])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.items import sorted_classes
from .procs import NA_CLASS, Categorify, FillMissing, Normalize, TabularProc, _lookup, proc_from_state
from .table import TabularTensors

__all__ = ["TabularProcessor", "Y_BLOCKS"]

Y_BLOCKS = ("classification", "regression")
ProcSpec = TabularProc | type


def _names(x: str | Sequence[str] | None, what: str) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    names = list(x)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"{what} must be column names (strings), got {bad[:3]}")
    return names


def _is_text(col: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(col.dtype) or pd.api.types.is_string_dtype(col.dtype) \
        or isinstance(col.dtype, pd.CategoricalDtype)


def _make_procs(procs: Sequence[ProcSpec] | None) -> list[TabularProc]:
    out = []
    for p in procs if procs is not None else (Categorify, FillMissing, Normalize):
        if isinstance(p, type) and issubclass(p, TabularProc):
            p = p()
        if not isinstance(p, TabularProc):
            raise TypeError(f"procs must be TabularProc classes or instances (Categorify, FillMissing, Normalize), "
                            f"got {p!r}")
        out.append(p)
    return sorted(out, key=lambda p: p.order)


class TabularProcessor:
    """Columns, cleaning, procs and target of a table (see the module docstring for the steps).

    Args:
        cat_names: categorical columns (become embeddings).
        cont_names: continuous columns (become normalised floats).
        y_names: the target column (or several, for regression). Empty for unlabelled data.
        procs: proc classes or instances; default ``[Categorify, FillMissing, Normalize]``. They always
            run in their ``order`` (FillMissing, Categorify, Normalize).
        y_block: ``"classification"`` or ``"regression"``; ``None`` picks regression for float targets
            and classification for anything else (strings, ints, bools).
        na_values: extra values that mean "missing" in any used column, compared after stripping
            spaces (Adult: ``["?"]``).
        strip: strip leading/trailing spaces of text values (UCI files write ``" Private"``).

    >>> df = pd.DataFrame({"job": ["a", "b", "a"], "age": [20.0, 30.0, None], "y": [1.5, 2.0, 0.5]})
    >>> tp = TabularProcessor("job", "age", "y")
    >>> t = tp.fit(df)                                       # fitted on these rows; float target: regression
    >>> tp.y_block, tp.cat_names, t.cats.tolist()           # codes of job and of the added age_na flag
    ('regression', ['job', 'age_na'], [[1, 1], [2, 1], [1, 2]])
    >>> tp.decode(t.cats, t.conts)["age"].round(3).tolist()  # the missing age was filled with the median
    [20.0, 30.0, 25.0]
    """

    def __init__(self, cat_names: str | Sequence[str] | None = None, cont_names: str | Sequence[str] | None = None,
                 y_names: str | Sequence[str] | None = None, procs: Sequence[ProcSpec] | None = None,
                 y_block: str | None = None, na_values: Sequence[Any] | None = None, strip: bool = True):
        self.cat_names, self.cont_names = _names(cat_names, "cat_names"), _names(cont_names, "cont_names")
        self.y_names = _names(y_names, "y_names")
        self._check_names()
        if y_block is not None and y_block not in Y_BLOCKS:
            raise ValueError(f"y_block must be one of {Y_BLOCKS} or None (pick from the data), got {y_block!r}")
        self.y_block = y_block
        self.na_values = [v.strip() if isinstance(v, str) and strip else v for v in (na_values or [])]
        self.strip = bool(strip)
        self.procs = _make_procs(procs)
        self.vocab: list[Any] | None = None
        self.fitted = False

    # --- checks ------------------------------------------------------------------------------------
    def _check_names(self) -> None:
        seen: dict[str, str] = {}
        for what, names in (("cat_names", self.cat_names), ("cont_names", self.cont_names),
                            ("y_names", self.y_names)):
            for n in names:
                if n in seen:
                    raise ValueError(f"column {n!r} is in both {seen[n]} and {what}; a column has one role")
                seen[n] = what

    def check_columns(self, df: pd.DataFrame, with_labels: bool) -> None:
        """Raise a clear error when ``df`` is not a frame, has duplicated names or lacks a used column."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
        if df.columns.duplicated().any():
            dup = list(df.columns[df.columns.duplicated()])
            raise ValueError(f"the table has duplicated column names {dup}; rename them first")
        needed = [("cat_names", n) for n in self._input_cat_names()] + [("cont_names", n) for n in self.cont_names]
        if with_labels:
            needed += [("y_names", n) for n in self.y_names]
        missing = [(w, n) for w, n in needed if n not in df.columns]
        if missing:
            desc = ", ".join(f"{n!r} (in {w})" for w, n in missing)
            raise KeyError(f"column(s) {desc} not found; the table's columns are {list(df.columns)}")

    def _input_cat_names(self) -> list[str]:
        """The categorical columns read from the data (not the ones procs add, such as ``age_na``)."""
        added = {n for p in self.procs for n in p.new_cat_names} if self.fitted else set()
        return [n for n in self.cat_names if n not in added]

    # --- cleaning ----------------------------------------------------------------------------------
    def _clean_text(self, col: pd.Series) -> pd.Series:
        if not _is_text(col):
            return col
        col = col.astype(object)
        if self.strip:
            col = col.map(lambda v: v.strip() if isinstance(v, str) else v)
        return col

    def _mask_markers(self, col: pd.Series) -> pd.Series:
        if not self.na_values:
            return col
        return col.mask(col.isin(self.na_values))

    def clean(self, df: pd.DataFrame, with_labels: bool = True) -> pd.DataFrame:
        """The used columns of ``df``, cleaned (a new frame; ``df`` is never modified)."""
        self.check_columns(df, with_labels)
        out = {}
        for n in self._input_cat_names():
            out[n] = self._mask_markers(self._clean_text(df[n]))
        for n in self.cont_names:
            out[n] = self._to_number(self._mask_markers(self._clean_text(df[n])), n)
        if with_labels:
            for n in self.y_names:
                out[n] = self._mask_markers(self._clean_text(df[n]))
        return pd.DataFrame(out, index=df.index)

    def _to_number(self, col: pd.Series, name: str) -> pd.Series:
        return self._check_finite(self._to_number_raw(col, name), name)

    @staticmethod
    def _check_finite(num: pd.Series, name: str) -> pd.Series:
        """Refuse ``inf``/``-inf`` where the data enters (they would turn Normalize's statistics and the loss
        into NaN), naming the column and the rows."""
        inf = np.isinf(num.to_numpy(dtype=np.float64))
        if inf.any():
            rows = list(num.index[inf][:5])
            raise ValueError(f"column {name!r} has {int(inf.sum())} infinite value(s) (inf/-inf) at row(s) {rows}"
                             f"{' ...' if inf.sum() > 5 else ''}; replace them (e.g. df[{name!r}] = "
                             f"df[{name!r}].replace([np.inf, -np.inf], np.nan) so FillMissing fills them) or drop "
                             "those rows")
        return num

    def _to_number_raw(self, col: pd.Series, name: str) -> pd.Series:
        if pd.api.types.is_bool_dtype(col.dtype):
            return col.astype(np.float64)
        if pd.api.types.is_numeric_dtype(col.dtype):
            return col.astype(np.float64)
        num = pd.to_numeric(col, errors="coerce")
        bad = num.isna() & col.notna()
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"continuous column {name!r} has a non-numeric value {col.iloc[pos]!r} (row {pos}, "
                             f"{int(bad.sum())} such rows); declare it missing with na_values=[{col.iloc[pos]!r}] "
                             "or move the column to cat_names")
        return num.astype(np.float64)

    # --- fitting -----------------------------------------------------------------------------------
    def clean_target(self, df: pd.DataFrame) -> pd.DataFrame:
        """The target column(s) of ``df``, cleaned (stripped, missing markers as NaN)."""
        self.check_columns(df, with_labels=True)
        return pd.DataFrame({n: self._mask_markers(self._clean_text(df[n])) for n in self.y_names}, index=df.index)

    def fit(self, df: pd.DataFrame) -> TabularTensors:
        """Fit the procs and the target on ``df`` (the training rows) and return its tensors."""
        clean = self.clean(df, with_labels=True)
        if len(clean) == 0:
            raise ValueError("cannot fit the tabular procs on an empty table")
        cat_names, self.fitted = self._input_cat_names(), False   # refitting starts from the data's columns
        for p in self.procs:
            p.setup(clean, cat_names, self.cont_names)
            clean = p.encode(clean)
            cat_names += [n for n in p.new_cat_names if n not in cat_names]
        if cat_names and not any(isinstance(p, Categorify) for p in self.procs):
            raise ValueError(f"categorical columns {cat_names} need the Categorify proc to become integer codes; "
                             "add Categorify to procs")
        self.cat_names = cat_names
        self._fit_target(clean)
        self.fitted = True
        return self._tensors(clean, with_labels=True)

    def _fit_target(self, clean: pd.DataFrame) -> None:
        if not self.y_names:
            self.y_block, self.vocab = self.y_block or "regression", None
            return
        if self.y_block is None:
            floats = all(pd.api.types.is_float_dtype(clean[n].dtype) for n in self.y_names)
            self.y_block = "regression" if floats else "classification"
        if self.y_block == "classification":
            if len(self.y_names) != 1:
                raise ValueError(f"classification takes one target column, got y_names={self.y_names}; "
                                 "pass y_block='regression' for several float targets")
            y = self.y_names[0]
            vals = [v.item() if isinstance(v, np.generic) else v for v in pd.unique(clean[y].dropna())]
            self.vocab = sorted_classes(vals, what=f"the values of target {y!r}",  # 1 and '1' would be two classes: refused
                                        fix=f", e.g. df[{y!r}] = df[{y!r}].astype(str)")
            if len(self.vocab) < 2:
                raise ValueError(f"target {self.y_names[0]!r} has a single class {self.vocab} in the training rows; "
                                 "a classifier needs at least two")
        else:
            self.vocab = None

    # --- applying ----------------------------------------------------------------------------------
    def process(self, df: pd.DataFrame, with_labels: bool = False) -> TabularTensors:
        """Apply the fitted cleaning and procs to new rows (validation, test, predict) → tensors."""
        if not self.fitted:
            raise RuntimeError("TabularProcessor is not fitted: call fit(train_df) first")
        clean = self.clean(df, with_labels=with_labels)
        for p in self.procs:
            clean = p.encode(clean)
        return self._tensors(clean, with_labels=with_labels)

    def _tensors(self, clean: pd.DataFrame, with_labels: bool) -> TabularTensors:
        n = len(clean)
        cats = torch.from_numpy(np.ascontiguousarray(clean[self.cat_names].to_numpy(dtype=np.int64, copy=True))) \
            if self.cat_names else torch.zeros(n, 0, dtype=torch.int64)
        if self.cont_names:
            conts_np = clean[self.cont_names].to_numpy(dtype=np.float32, copy=True)
            if np.isnan(conts_np).any():
                bad = [c for c in self.cont_names if clean[c].isna().any()]
                raise ValueError(f"continuous column(s) {bad} still have missing values after the procs; "
                                 "add FillMissing to procs")
            conts = torch.from_numpy(np.ascontiguousarray(conts_np))
        else:
            conts = torch.zeros(n, 0, dtype=torch.float32)
        ys = self._target_tensor(clean) if with_labels and self.y_names else None
        return TabularTensors(cats, conts, ys)

    def _target_tensor(self, clean: pd.DataFrame) -> torch.Tensor:
        if clean[self.y_names].isna().to_numpy().any():
            n_bad = int(clean[self.y_names].isna().any(axis=1).sum())
            raise ValueError(f"{n_bad} row(s) have a missing target {self.y_names}; drop them first "
                             "(TabularDataLoaders.from_df drops them with a warning)")
        if self.y_block == "classification":
            col = clean[self.y_names[0]]
            codes = _lookup(self.vocab, col)
            if (codes < 0).any():
                unknown = pd.unique(col[codes < 0])[:5]
                raise ValueError(f"target {self.y_names[0]!r} has classes never seen in the training rows: "
                                 f"{list(unknown)}; the known classes are {self.vocab}")
            return torch.from_numpy(codes)
        vals = np.stack([self._to_number(clean[n], n).to_numpy(dtype=np.float32) for n in self.y_names], axis=1)
        return torch.from_numpy(np.ascontiguousarray(vals))  # [N, n_targets]: [B, 1] batches, as fastai

    # --- decoding ----------------------------------------------------------------------------------
    def decode(self, cats: torch.Tensor, conts: torch.Tensor) -> pd.DataFrame:
        """Processed inputs back to a readable frame: category names, continuous values in their units."""
        df = pd.concat([pd.DataFrame(cats.cpu().numpy(), columns=self.cat_names),
                        pd.DataFrame(conts.cpu().float().numpy().astype(np.float64), columns=self.cont_names)],
                       axis=1)
        for p in reversed(self.procs):
            df = p.decode(df)
        return df[self.cat_names + self.cont_names]

    def decode_target(self, y: torch.Tensor) -> list[Any]:
        """Target codes or values back to labels (classification) or floats (regression)."""
        if self.y_block == "classification":
            return [self.vocab[i] for i in y.long().reshape(-1).tolist()]
        return y.float().reshape(len(y), -1).squeeze(1).tolist() if len(self.y_names) <= 1 else y.float().tolist()

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column, `NA_CLASS` included, in ``cat_names`` order."""
        cat = next((p for p in self.procs if isinstance(p, Categorify)), None)
        card = cat.cardinalities() if cat is not None else {}
        return [card[n] for n in self.cat_names]

    # --- export ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The fitted state as JSON-able data."""
        if not self.fitted:
            raise RuntimeError("TabularProcessor is not fitted: nothing to export")
        return {"cat_names": self.cat_names, "cont_names": self.cont_names, "y_names": self.y_names,
                "y_block": self.y_block, "vocab": self.vocab, "na_values": self.na_values, "strip": self.strip,
                "procs": [{"name": type(p).__name__, "state": p.state()} for p in self.procs],
                "na_class": NA_CLASS}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TabularProcessor":
        tp = cls(state["cat_names"], state["cont_names"], state["y_names"], procs=[], y_block=state["y_block"],
                 na_values=state["na_values"], strip=state["strip"])
        tp.procs = sorted((proc_from_state(p["name"], p["state"]) for p in state["procs"]), key=lambda p: p.order)
        tp.vocab = list(state["vocab"]) if state["vocab"] is not None else None
        tp.fitted = True
        return tp

    def __repr__(self) -> str:
        return (f"TabularProcessor(cat_names={self.cat_names}, cont_names={self.cont_names}, y_names={self.y_names}, "
                f"y_block={self.y_block!r}, procs={self.procs})")

