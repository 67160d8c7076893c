"""`TabularDataLoaders`: a pandas table → fitted procs → tensors → sliced batches.

>>> import pandas as pd
>>> df = pd.DataFrame({"job": ["a", "b"] * 20, "age": range(40), "y": ["no", "yes"] * 20})
>>> dls = TabularDataLoaders.from_df(df, cat_names=["job"], cont_names=["age"], y_names="y", bs=8, device="cpu")
>>> dls.vocab, len(dls.train.dataset), len(dls.valid.dataset)
(['no', 'yes'], 32, 8)
>>> [tuple(t.shape) for t in dls.one_batch()]
[(8, 1), (8, 1), (8,)]
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..core.data import DataLoaders
from ..core.losses import CrossEntropyLossFlat, MSELossFlat
from ..core.registry import register_dls
from ..core.split import IndexSplitter, RandomSplitter
from .processor import ProcSpec, TabularProcessor
from .procs import Categorify
from .show import display_df
from .table import TabularLoader
from .tabular_pandas import TabularPandas
from ..core.paths import expand_path

__all__ = ["TabularDataLoaders", "rows_to_df"]


def rows_to_df(items: Any) -> pd.DataFrame:
    """A DataFrame from a DataFrame, a dict or Series (one row), or a list of dicts/Series.

    >>> rows_to_df({"job": "a", "age": 30})
      job  age
    0   a   30
    >>> rows_to_df([{"job": "a"}, pd.Series({"job": "b", "age": 41})]).to_dict("list")
    {'job': ['a', 'b'], 'age': [nan, 41.0]}
    """
    if isinstance(items, pd.DataFrame):
        return items
    if isinstance(items, (Mapping, pd.Series)):
        items = [items]
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise TypeError(f"tabular items must be a DataFrame, a dict/Series (one row) or a list of them, "
                        f"got {type(items).__name__}")
    rows = []
    for i, it in enumerate(items):
        if isinstance(it, pd.Series):
            rows.append(it.to_dict())
        elif isinstance(it, Mapping):
            rows.append(dict(it))
        else:
            raise TypeError(f"row {i} is a {type(it).__name__}; a tabular row must be a dict or a pandas Series "
                            "mapping column names to values")
    return pd.DataFrame(rows)


@register_dls
class TabularDataLoaders(DataLoaders):
    """Training and validation batches of a table, with the fitted `TabularProcessor` that made them.

    A batch is ``(cats int64 [B, n_cat], conts float32 [B, n_cont], y)``; ``n_inp = 2``.
    Build it with `from_df` or `from_csv`; ``dls.procs`` holds the fitted processor, ``dls.loss_func``
    the default loss (cross-entropy for classification, MSE for regression).

    >>> df = pd.DataFrame({"job": ["a", "b", "a", "b"] * 5, "age": [20.0, None, 40.0, 30.0] * 5, "y": [1.5, 2.5] * 10})
    >>> dls = TabularDataLoaders.from_df(df, cat_names="job", cont_names="age", y_names="y", valid_idx=range(16, 20),
    ...                                  bs=4, device="cpu")
    >>> dls.cat_names, dls.cont_names, dls.procs.y_block, dls.loss_func    # age had gaps: an age_na column
    (['job', 'age_na'], ['age'], 'regression', MSELossFlat())
    """

    def __init__(self, train: TabularLoader | None, valid: TabularLoader | None, processor: TabularProcessor,
                 path: str | Path = ".", device: str | torch.device | None = None, bs: int = 64):
        super().__init__(train, valid, device=device, n_inp=2, vocab=processor.vocab)
        self.procs, self.path, self.bs = processor, expand_path(path), bs
        self.loss_func = CrossEntropyLossFlat() if processor.y_block == "classification" else MSELossFlat()
        self.to(self.device)

    # --- construction --------------------------------------------------------------------------------
    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | Path = ".", procs: Sequence[ProcSpec] | None = None,
                cat_names: str | Sequence[str] | None = None, cont_names: str | Sequence[str] | None = None,
                y_names: str | Sequence[str] | None = None, y_block: str | None = None,
                valid_idx: Sequence[int] | None = None, valid_pct: float = 0.2, seed: int | None = 42,
                bs: int = 64, val_bs: int | None = None, shuffle: bool = True, drop_last: bool = True,
                na_values: Sequence[Any] | None = None, strip: bool = True,
                device: str | torch.device | None = None) -> "TabularDataLoaders":
        """Fit the procs on the training rows of ``df`` and batch both splits.

        Args:
            df: the table (not modified).
            path: where `Learner.save` and friends write (``path/models``).
            procs: default ``[Categorify, FillMissing, Normalize]``, fitted on the training rows only.
            cat_names / cont_names: categorical / continuous columns. When both are ``None`` they are
                inferred from the dtypes (numbers → continuous, anything else → categorical).
            y_names: the target column; y_block: ``"classification"``/``"regression"``/``None`` (from the
                data: float → regression, anything else → classification).
            valid_idx: positions (0-based rows of ``df``) of the validation rows; without it a random
                ``valid_pct`` of the rows (``RandomSplitter(valid_pct, seed)``).
            bs / val_bs: batch sizes (``val_bs`` defaults to ``2 * bs``); shuffle / drop_last: training
                loader options (seeded by ``seed``).
            na_values: values that mean "missing" (compared after stripping spaces), e.g. ``["?"]``.
            strip: strip spaces around text values.

        Rows whose target is missing are dropped, with a warning that gives their count.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}; for a file use from_csv")
        if len(df) == 0:
            raise ValueError("the table is empty")
        y_list = [y_names] if isinstance(y_names, str) else list(y_names or [])
        if not y_list:
            raise ValueError(f"y_names is required: the target column, one of {list(df.columns)}")
        if cat_names is None and cont_names is None:
            cat_names, cont_names = _infer_names(df, y_list)
        splitter = IndexSplitter(valid_idx) if valid_idx is not None else RandomSplitter(valid_pct, seed)
        to = TabularPandas(df, procs, cat_names, cont_names, y_names, y_block=y_block,
                           splits=splitter(range(len(df))), na_values=na_values, strip=strip)
        return to.dataloaders(bs=bs, val_bs=val_bs, shuffle=shuffle, drop_last=drop_last, seed=seed, path=path,
                              device=device)

    @classmethod
    def from_csv(cls, csv: str | Path, path: str | Path = ".", procs: Sequence[ProcSpec] | None = None,
                 cat_names: str | Sequence[str] | None = None, cont_names: str | Sequence[str] | None = None,
                 y_names: str | Sequence[str] | None = None, y_block: str | None = None,
                 valid_idx: Sequence[int] | None = None, valid_pct: float = 0.2, seed: int | None = 42,
                 bs: int = 64, val_bs: int | None = None, shuffle: bool = True, drop_last: bool = True,
                 na_values: Sequence[Any] | None = None, strip: bool = True, sep: str = ",",
                 device: str | torch.device | None = None) -> "TabularDataLoaders":
        """Read ``csv`` with pandas (spaces after separators skipped) and call `from_df`.

        ``path`` (where ``learn.save`` writes ``models/``) is the working directory, not the data folder:
        learnkit never writes beside your data unless you point ``path`` there.
        """
        csv = expand_path(csv)
        if not csv.is_file():
            raise FileNotFoundError(f"no CSV file at {csv}; check the path (or LEARNKIT_DATA)")
        df = pd.read_csv(csv, sep=sep, skipinitialspace=True, low_memory=False)
        return cls.from_df(df, path=path, procs=procs, cat_names=cat_names,
                           cont_names=cont_names, y_names=y_names, y_block=y_block, valid_idx=valid_idx,
                           valid_pct=valid_pct, seed=seed, bs=bs, val_bs=val_bs, shuffle=shuffle,
                           drop_last=drop_last, na_values=na_values, strip=strip, device=device)

    # --- names the model needs ---------------------------------------------------------------------
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
    def classes(self) -> dict[str, Any]:
        """``{column: CategoryMap}`` of the categorical columns (fastai's ``dls.classes``); ``.o2i`` maps back."""
        cat = next((p for p in self.procs.procs if isinstance(p, Categorify)), None)
        return dict(cat.classes) if cat is not None else {}

    @property
    def c(self) -> int:
        """Model outputs: number of classes, or number of regression targets."""
        return len(self.vocab) if self.vocab is not None else max(1, len(self.procs.y_names))

    def to(self, device: str | torch.device) -> "TabularDataLoaders":
        """Move the tables themselves to ``device``: batches are then slices already on it."""
        self.device = torch.device(device)
        for dl in self.loaders:
            if isinstance(dl, TabularLoader):
                dl.to(self.device)
        return self

    # --- inference ---------------------------------------------------------------------------------
    def test_dl(self, items: Any, with_labels: bool = False, bs: int | None = None) -> TabularLoader:
        """A loader over new rows (DataFrame, dict, Series or a list of dicts/Series), processed with the
        procs fitted on the training rows. Unseen categories become ``#na#`` (with a warning)."""
        df = rows_to_df(items)
        if len(df) == 0:
            raise ValueError("test_dl got no rows")
        t = self.procs.process(df, with_labels=with_labels)
        return TabularLoader(t.to(self.device), bs or 2 * self.bs)

    def decode_pred(self, decoded: torch.Tensor, probs: torch.Tensor) -> tuple:
        if self.procs.y_block == "classification":
            idx = int(decoded)
            return self.vocab[idx], idx, probs
        vals = decoded.float().reshape(-1).tolist()
        return (vals[0], vals[0], probs) if len(vals) == 1 else (vals, vals, probs)

    def decode_predict(self, item: Any, decoded: torch.Tensor, probs: torch.Tensor) -> tuple:
        """``learn.predict(row)``: ``(row, class index or value, probabilities)``, where ``row`` is a
        ``pd.Series`` of the row as the model saw it (filled, categories as names, ``#na#`` for unknown)
        plus the prediction under the target name(s)."""
        label, idx, probs = self.decode_pred(decoded, probs)
        with warnings.catch_warnings():  # test_dl already warned about unseen categories in this row
            warnings.simplefilter("ignore")
            t = self.procs.process(rows_to_df(item))
        row = self.procs.decode(t.cats[:1], t.conts[:1]).iloc[0]
        preds = [label] if len(self.y_names) <= 1 else label
        for name, v in zip(self.y_names or ["prediction"], preds):
            row[name] = v
        return row, idx, probs

    def decode_batch(self, batch: Sequence[torch.Tensor], max_n: int | None = None) -> pd.DataFrame:
        """A batch ``(cats, conts[, y])`` as a readable frame (targets decoded when present)."""
        cats, conts = batch[0][:max_n], batch[1][:max_n]
        df = self.procs.decode(cats, conts)
        if len(batch) > 2 and self.y_names:
            y = batch[2][:max_n]
            if self.procs.y_block == "classification" or len(self.y_names) == 1:
                df[self.y_names[0]] = self.procs.decode_target(y)
            else:
                for j, name in enumerate(self.y_names):
                    df[name] = y[:, j].float().tolist()
        return df

    def show_batch(self, max_n: int = 10, split: int = 0) -> pd.DataFrame:
        """Show (and return) the first ``max_n`` rows of a batch, decoded: category names, continuous
        values in their original units, the target as a label."""
        return display_df(self.decode_batch(self.one_batch(split), max_n))

    # --- export ------------------------------------------------------------------------------------
    def onnx_spec(self) -> Any:
        """The ONNX graph's inputs: ``cats`` ``int64 [B, n_cat]`` and ``conts`` ``float32 [B, n_cont]``, the
        tensors the procs make (their tables are in the sidecar); see `learnkit.core.onnx`."""
        from ..core.onnx import OnnxSpec
        cards = self.procs.cardinalities
        g = torch.Generator().manual_seed(0)
        cats = torch.stack([torch.randint(0, c, (3,), generator=g) for c in cards], 1) if cards else \
            torch.zeros(3, 0, dtype=torch.int64)
        conts = torch.randn(3, len(self.cont_names), generator=g)
        return OnnxSpec(["cats", "conts"], (cats, conts), lambda c, x: (c, x), sidecar={
            "input": "cats: int64 [batch, n_cat] category codes, conts: float32 [batch, n_cont] filled and "
                     "normalised values, both as TabularProcessor.process makes them (tables in dls_config)",
            "cat_names": self.cat_names, "cont_names": self.cont_names, "y_names": self.y_names,
            "y_block": self.procs.y_block})

    def export_config(self) -> dict[str, Any]:
        return {"processor": self.procs.state(), "bs": self.bs}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> "TabularDataLoaders":
        """An inference-only DataLoaders (no training data) from `export_config`."""
        return cls(None, None, TabularProcessor.from_state(config["processor"]), device=device,
                   bs=int(config.get("bs", 64)))

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["categorical"] = f"{len(self.cat_names)}: {', '.join(self.cat_names)}"
        out["continuous"] = f"{len(self.cont_names)}: {', '.join(self.cont_names)}"
        out["target"] = f"{', '.join(self.y_names)} ({self.procs.y_block})"
        return out


def _infer_names(df: pd.DataFrame, y_names: list[str]) -> tuple[list[str], list[str]]:
    cats, conts = [], []
    for n in df.columns:
        if n in y_names:
            continue
        col = df[n]
        is_num = pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)
        (conts if is_num else cats).append(n)
    return cats, conts

