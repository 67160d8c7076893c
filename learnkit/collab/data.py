"""`CollabDataLoaders`: a ratings table (user, item, rating) as index tensors, split and batched.

Users and items are indexed from the *training* rows only, with index 0 reserved for ids never seen in
training (`IdMap`); a validation rating whose user or item is new therefore scores the model's fallback
(the other side's bias plus the global bias) honestly instead of an embedding that never trained.
A batch is ``(x, y)``: ``x`` a ``[B, 2]`` int64 tensor of (user index, item index), ``y`` the ``[B]``
float ratings.

>>> import pandas as pd
>>> df = pd.DataFrame({"user": [i // 2 for i in range(30)], "movie": ["a", "b"] * 15, "rating": [4., 3.] * 15})
>>> dls = CollabDataLoaders.from_df(df, bs=8, device="cpu")
>>> x, y = dls.one_batch()
>>> x.shape, y.shape, dls.classes["movie"]
(torch.Size([8, 2]), torch.Size([8]), ['#na#', 'a', 'b'])
"""
from __future__ import annotations

import warnings

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.data import DataLoaders
from ..core.losses import MSELossFlat
from ..core.registry import register_dls
from ..core.split import RandomSplitter, check_split
from .ids import IdMap
from .loader import TensorLoader
from ..core.paths import expand_path

__all__ = ["CollabDataLoaders"]


def _check_columns(df: pd.DataFrame, user_name: str | None, item_name: str | None,
                   rating_name: str | None) -> tuple[Any, Any, Any]:
    cols = list(df.columns)
    names = [user_name, item_name, rating_name]
    if any(n is None for n in names) and len(cols) < 3:
        raise ValueError(f"the ratings table needs user, item and rating columns; it has {cols}. "
                         "Pass user_name=, item_name= and rating_name= or add the missing columns.")
    names = [cols[i] if n is None else n for i, n in enumerate(names)]
    for what, n in zip(("user_name", "item_name", "rating_name"), names):
        if n not in df.columns:
            raise KeyError(f"{what}={n!r} is not a column of the ratings table; the columns are {cols}")
    if len(set(names)) < 3:
        raise ValueError(f"user, item and rating columns must be three different columns, got {names}")
    return tuple(names)


def _check_ids(col: pd.Series, name: Any) -> None:
    missing = col.isna().to_numpy()
    if missing.any():
        row = col.index[int(np.argmax(missing))]
        raise ValueError(f"column {name!r} has {int(missing.sum())} missing id(s), e.g. at row {row!r}; "
                         "drop those rows (df.dropna(subset=[...])) before building the DataLoaders")


def _check_id_types(col: pd.Series, name: Any) -> None:
    """Ids mixing numbers and strings (``196`` and ``'196'``) would silently become two users: refuse them."""
    if col.dtype != object:
        return
    is_str = col.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    if not is_str.any() or is_str.all():
        return
    strs, others = col[is_str], col[~is_str]
    clash = strs[strs.isin(set(others.astype(str)))]
    s_ex = clash.iloc[0] if len(clash) else strs.iloc[0]
    o_pos = next((i for i, v in enumerate(others) if str(v) == s_ex), 0)
    s_pos = list(strs).index(s_ex)
    raise ValueError(f"column {name!r} mixes number and string ids, e.g. {others.iloc[o_pos]!r} (row "
                     f"{others.index.tolist()[o_pos]!r}) and {s_ex!r} (row {strs.index.tolist()[s_pos]!r}): they would be two different ids. "
                     f"Make the column one type first, e.g. df[{name!r}] = df[{name!r}].astype(str)")


def _drop_duplicate_pairs(ratings: pd.DataFrame, user_name: Any, item_name: Any) -> pd.DataFrame:
    """Keep the last rating of each (user, item) pair, with a warning: duplicates would otherwise land on both
    sides of the train/valid split and leak the validation ratings into training."""
    dup = ratings.duplicated(subset=[user_name, item_name], keep="last").to_numpy()
    if not dup.any():
        return ratings
    # each column on its own: a whole row of int and float columns would come back as floats
    user, item = (ratings.loc[dup, c].iloc[0] for c in (user_name, item_name))
    user, item = (v.item() if hasattr(v, "item") else v for v in (user, item))
    warnings.warn(f"the ratings table has {int(dup.sum())} duplicate ({user_name!r}, {item_name!r}) row(s), e.g. "
                  f"{user_name}={user!r}, {item_name}={item!r}; keeping the last rating of each pair (so none "
                  "leaks between train and valid; a splitter now sees the deduplicated table)", stacklevel=3)
    return ratings[~dup]


def _check_ratings(col: pd.Series, name: Any) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        num = pd.to_numeric(col, errors="coerce")
        bad = col[num.isna() & col.notna()]
        example = f"such as {bad.iloc[0]!r} at row {bad.index[0]!r}" if len(bad) else f"of dtype {col.dtype}"
        raise TypeError(f"rating column {name!r} must be numeric, but it holds values {example}. Map the values to "
                        "numbers (e.g. df[col].map({'bad': 1, 'good': 5})) or pick another rating_name.")
    vals = col.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        row = col.index[int(np.argmax(bad))]
        raise ValueError(f"rating column {name!r} has {int(bad.sum())} missing or infinite value(s), e.g. at row "
                         f"{row!r}; drop or fill them before building the DataLoaders")
    return vals


@register_dls
class CollabDataLoaders(DataLoaders):
    """Ratings as ``(x=[user_idx, item_idx], y=rating)`` batches, plus the id maps that name the indices.

    Build it with `from_df` or `from_csv`; ``dls.classes[name]`` lists the id of every embedding index
    (index 0 is ``'#na#'``, the unknown id), ``dls.users`` / ``dls.items`` are the `IdMap` objects.

    >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "movie": ["a", "b", "a", "c", "b"], "stars": [5., 1., 4., 2., 3.]})
    >>> dls = CollabDataLoaders.from_df(df, valid_pct=0, bs=2, device="cpu")      # every rating in training
    >>> dls.n_users, dls.n_items, dls.classes["movie"], dls.rating_range
    (4, 4, ['#na#', 'a', 'b', 'c'], (1.0, 5.0))
    >>> next(iter(dls.test_dl([(2, "b"), (9, "a")], unknown="fallback")))      # user 9 is new: index 0
    (tensor([[2, 2],
            [0, 1]]),)
    """

    def __init__(self, train: TensorLoader | None, valid: TensorLoader | None, users: IdMap, items: IdMap,
                 user_name: Any = "user", item_name: Any = "item", rating_name: Any = "rating",
                 rating_range: tuple[float, float] | None = None, device: str | torch.device | None = None):
        super().__init__(train, valid, device=device, n_inp=1)
        self.users, self.items = users, items
        self.user_name, self.item_name, self.rating_name = user_name, item_name, rating_name
        self.rating_range = rating_range
        self.default_bs: int = getattr(train, "batch_size", 256)
        self.loss_func = MSELossFlat()
        self.to(self.device)

    # --- construction --------------------------------------------------------------------------------
    @classmethod
    def from_df(cls, ratings: pd.DataFrame, user_name: Any = None, item_name: Any = None, rating_name: Any = None,
                valid_pct: float = 0.2, seed: int | None = 42, bs: int = 256,
                splitter: Callable[[pd.DataFrame], tuple[list[int], list[int]]] | None = None,
                device: str | torch.device | None = None) -> "CollabDataLoaders":
        """Ratings from a DataFrame; user, item and rating columns default to the first three.

        ``splitter`` (any `learnkit.core.split` splitter, called on the DataFrame) replaces the random
        ``valid_pct`` split; ``seed`` fixes both the split and the shuffling (``None``: fresh each time).
        """
        if not isinstance(ratings, pd.DataFrame):
            raise TypeError(f"ratings must be a pandas DataFrame, got {type(ratings).__name__}")
        user_name, item_name, rating_name = _check_columns(ratings, user_name, item_name, rating_name)
        _check_ids(ratings[user_name], user_name)
        _check_ids(ratings[item_name], item_name)
        _check_id_types(ratings[user_name], user_name)
        _check_id_types(ratings[item_name], item_name)
        ratings = _drop_duplicate_pairs(ratings, user_name, item_name)
        y_all = _check_ratings(ratings[rating_name], rating_name)
        if len(ratings) == 0:
            raise ValueError("the ratings table is empty")
        split = splitter if splitter is not None else RandomSplitter(valid_pct, seed)
        train_idx, valid_idx = split(ratings.reset_index(drop=True))
        check_split(train_idx, valid_idx, allow_empty_valid=splitter is None and valid_pct == 0, what="ratings")
        train_idx, valid_idx = np.asarray(train_idx, dtype=np.int64), np.asarray(valid_idx, dtype=np.int64)
        u_col, i_col = ratings[user_name].to_numpy(), ratings[item_name].to_numpy()
        users, items = IdMap(u_col[train_idx], str(user_name)), IdMap(i_col[train_idx], str(item_name))
        x = torch.stack([users.encode(u_col, unknown="fallback"), items.encode(i_col, unknown="fallback")], dim=1)
        y = torch.from_numpy(y_all.astype(np.float32))
        tr, va = torch.from_numpy(train_idx), torch.from_numpy(valid_idx)
        train = TensorLoader(x[tr], y[tr], bs=bs, shuffle=True, seed=seed)
        valid = TensorLoader(x[va], y[va], bs=bs * 2, shuffle=False) if len(va) else None
        return cls(train, valid, users, items, user_name, item_name, rating_name,
                   rating_range=(float(y_all.min()), float(y_all.max())), device=device)

    @classmethod
    def from_csv(cls, csv: str | Path, user_name: Any = None, item_name: Any = None, rating_name: Any = None,
                 sep: str | None = ",", header: int | str | None = "infer", names: Sequence[str] | None = None,
                 encoding: str = "utf-8", valid_pct: float = 0.2, seed: int | None = 42, bs: int = 256,
                 splitter: Callable | None = None, device: str | torch.device | None = None) -> "CollabDataLoaders":
        """Ratings from a delimited text file (``sep='\\t', header=None, names=[...]`` for MovieLens' ``u.data``)."""
        path = expand_path(csv)
        if not path.is_file():
            raise FileNotFoundError(f"ratings file {path} not found")
        df = pd.read_csv(path, sep=sep, header=header, names=names, encoding=encoding)
        return cls.from_df(df, user_name, item_name, rating_name, valid_pct=valid_pct, seed=seed, bs=bs,
                           splitter=splitter, device=device)

    # --- export protocol -----------------------------------------------------------------------------
    def onnx_spec(self) -> Any:
        """The ONNX graph's inputs: ``users`` and ``items``, ``int64 [B]`` indices into the id maps (the
        sidecar's ``users``/``items`` lists; index 0 is the unknown id); see `learnkit.core.onnx`."""
        from ..core.onnx import OnnxSpec
        g = torch.Generator().manual_seed(0)
        example = (torch.randint(0, self.n_users, (3,), generator=g), torch.randint(0, self.n_items, (3,), generator=g))
        return OnnxSpec(["users", "items"], example, lambda u, i: (torch.stack([u, i], dim=1),), sidecar={
            "input": "users, items: int64 [batch] indices; the index of an id is its position in "
                     "['#na#', *dls_config['users']] (resp. items), 0 for an unknown id",
            "user_name": self.user_name, "item_name": self.item_name, "rating_name": self.rating_name})

    def export_config(self) -> dict[str, Any]:
        """JSON-able state for `from_config`: column names, the id maps, the rating range, the batch size."""
        return {"user_name": self.user_name, "item_name": self.item_name, "rating_name": self.rating_name,
                "users": list(self.users.ids), "items": list(self.items.ids),
                "rating_range": list(self.rating_range) if self.rating_range is not None else None,
                "bs": self.default_bs}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], device: str | torch.device | None = None) -> "CollabDataLoaders":
        """An inference-only DataLoaders (no ratings) from `export_config`; ``test_dl`` and ``predict`` work."""
        rr = config.get("rating_range")
        dls = cls(None, None, IdMap(config["users"], str(config["user_name"])),
                  IdMap(config["items"], str(config["item_name"])), config["user_name"], config["item_name"],
                  config["rating_name"], rating_range=tuple(rr) if rr is not None else None, device=device)
        dls.default_bs = int(config.get("bs", 256))
        return dls

    # --- access --------------------------------------------------------------------------------------
    @property
    def classes(self) -> dict[Any, Any]:
        """``{user_name: ['#na#', *user ids], item_name: ['#na#', *item ids]}`` (index = embedding row), each
        a `CategoryMap`: ``dls.classes['title'].o2i['Star Wars (1977)']`` is that movie's embedding row."""
        return {self.user_name: self.users.classes, self.item_name: self.items.classes}

    @property
    def cat_names(self) -> list[Any]:
        """``[user_name, item_name]``: the two categorical variables (for `get_emb_sz`)."""
        return [self.user_name, self.item_name]

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def to(self, device: str | torch.device) -> "CollabDataLoaders":
        super().to(device)
        for dl in self.loaders:
            if isinstance(dl, TensorLoader):
                dl.to(self.device)
        return self

    def rated_items(self, user: Any) -> torch.Tensor:
        """Item indices that ``user`` rated in the training and validation data."""
        if not self.loaders:
            raise ValueError("this DataLoaders has no ratings (it was rebuilt for inference by load_learner), so "
                             "it cannot know what a user has seen: pass exclude_seen=False and exclude=[...]")
        u = int(self.users.encode([user])[0])
        seen = [dl.tensors[0][dl.tensors[0][:, 0] == u, 1] for dl in self.loaders]
        return torch.unique(torch.cat(seen))

    # --- inference -----------------------------------------------------------------------------------
    def _rows(self, items: Any, with_labels: bool) -> tuple[list, list, list | None]:
        if isinstance(items, pd.DataFrame):
            need = [self.user_name, self.item_name] + ([self.rating_name] if with_labels else [])
            missing = [c for c in need if c not in items.columns]
            if missing:
                raise KeyError(f"columns {missing} not found in the DataFrame; its columns are {list(items.columns)}")
            return (items[self.user_name].tolist(), items[self.item_name].tolist(),
                    items[self.rating_name].tolist() if with_labels else None)
        us, its, rs = [], [], []
        n_need = 3 if with_labels else 2
        for o in items:
            if isinstance(o, (Mapping, pd.Series)):
                keys = [self.user_name, self.item_name] + ([self.rating_name] if with_labels else [])
                absent = [k for k in keys if k not in o]
                if absent:
                    raise KeyError(f"item {dict(o)!r} has no {absent} key(s); expected keys {keys}")
                row = [o[k] for k in keys]
            elif isinstance(o, (tuple, list)) and len(o) >= n_need:
                row = list(o[:n_need])
            else:
                raise TypeError(f"cannot read a rating query from {o!r}: pass a (user, item"
                                f"{', rating' if with_labels else ''}) pair or a dict/Series with keys "
                                f"{self.user_name!r}, {self.item_name!r}")
            us.append(row[0])
            its.append(row[1])
            if with_labels:
                rs.append(row[2])
        return us, its, (rs if with_labels else None)

    def test_dl(self, items: Any, with_labels: bool = False, bs: int | None = None,
                unknown: str = "error") -> TensorLoader:
        """A loader over new (user, item) queries: a DataFrame, or a list of pairs or dicts/Series.

        ``unknown="error"`` (default) raises `UnknownIdError` naming an id never seen in training;
        ``unknown="fallback"`` scores it from the other side's bias and the global bias (index 0).
        """
        us, its, rs = self._rows(items, with_labels)
        if not us:
            raise ValueError("test_dl got no items")
        x = torch.stack([self.users.encode(us, unknown), self.items.encode(its, unknown)], dim=1)
        tensors = [x]
        if with_labels:
            tensors.append(torch.from_numpy(_check_ratings(pd.Series(rs), self.rating_name).astype(np.float32)))
        bs = bs or 2 * self.default_bs
        return TensorLoader(*tensors, bs=bs, shuffle=False).to(self.device)

    def decode_pred(self, decoded: torch.Tensor, probs: torch.Tensor) -> tuple:
        """``(rating, rating, prediction_tensor)`` for one query."""
        value = float(decoded.reshape(-1)[0])
        return value, value, probs

    # --- display -------------------------------------------------------------------------------------
    def show_batch(self, max_n: int = 9, split: int = 0) -> pd.DataFrame:
        """The first ``max_n`` ratings of a batch, with their original ids."""
        x, y = next(iter(self[split]))
        x, y = x[:max_n].cpu(), y[:max_n].cpu()
        return pd.DataFrame({self.user_name: self.users.decode(x[:, 0]), self.item_name: self.items.decode(x[:, 1]),
                             self.rating_name: y.tolist()})

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["users"] = f"{len(self.users.ids)} ({self.user_name!r})"
        out["items"] = f"{len(self.items.ids)} ({self.item_name!r})"
        if self.rating_range is not None:
            out["ratings"] = f"{self.rating_range[0]:g} to {self.rating_range[1]:g} ({self.rating_name!r})"
        if self.valid is not None:
            xv = self.valid.tensors[0]
            n_new = int(((xv[:, 0] == 0) | (xv[:, 1] == 0)).sum())
            if n_new:
                out["valid ratings with an unseen user/item"] = n_new
        return out
