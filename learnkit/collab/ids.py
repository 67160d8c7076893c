"""`IdMap`: user or item ids ↔ embedding indices, with index 0 reserved for unknown ids.

Ids may be ints or strings (never mixed with floats); they are kept as plain Python values, so
``IdMap(ids).ids`` round-trips through JSON unchanged. Encoding a whole column is one vectorised
``pandas.Index.get_indexer`` call, not a Python loop.

>>> m = IdMap([30, 10, 20])
>>> m.ids, len(m)
([10, 20, 30], 4)
>>> m.encode([20, 99], unknown="fallback").tolist()   # 99 is unknown: index 0
[2, 0]
>>> m.decode([1, 3])
[10, 30]
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.vocab import NA_CLASS, CategoryMap

__all__ = ["IdMap", "UNKNOWN", "UnknownIdError"]

#: The name shown for index 0, the slot of ids never seen in training (fastai's ``'#na#'``).
UNKNOWN = NA_CLASS  # code 0: an id never seen in training


class UnknownIdError(KeyError):
    """An id that the model never saw in training (a new user or item)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value it holds (``np.int64(3)`` → ``3``)."""
    return v.item() if isinstance(v, np.generic) else v


class IdMap:
    """The sorted distinct ids of one column; index ``i + 1`` is ``ids[i]``, index 0 is unknown.

    Args:
        ids: the ids (duplicates are dropped); each an ``int`` or a ``str``.
        name: the column name, used in error messages.

    >>> users = IdMap(["bob", "amy", "bob"], name="user")
    >>> users, users.classes, users.encode(["amy", "zoe"], unknown="fallback").tolist()
    (IdMap('user': 2 ids ['amy', 'bob'] + unknown), ['#na#', 'amy', 'bob'], [1, 0])
    >>> users.encode(["zoe"])
    Traceback (most recent call last):
    learnkit.collab.ids.UnknownIdError: 1 user id(s) never seen in training, e.g. 'zoe' (str); ...
    """

    def __init__(self, ids: Iterable[Any], name: str = "id"):
        self.name = name
        values = pd.unique(pd.Series(list(ids), dtype=object)).tolist()
        values = [_plain(v) for v in values]
        bad = [v for v in values if not isinstance(v, (int, str)) or isinstance(v, bool)]
        if bad:
            raise TypeError(f"column {name!r} holds {type(bad[0]).__name__} ids such as {bad[0]!r}; user and item ids "
                            f"must be integers or strings: convert the column first, e.g. df[{name!r}].astype(int) "
                            "or .astype(str)")
        self.ids: list[Any] = sorted(values, key=lambda v: (isinstance(v, str), v))
        self._index = pd.Index(self.ids, dtype=object)
        self._classes: CategoryMap | None = None
        if not self._index.is_unique:  # e.g. 1 and True, or 1 and 1.0 collapsed by pandas
            raise ValueError(f"column {name!r} holds ids that compare equal but differ in type; make them one type")

    def __len__(self) -> int:
        """The number of embedding rows: the ids plus the unknown slot."""
        return len(self.ids) + 1

    @property
    def classes(self) -> CategoryMap:
        """``['#na#', *ids]`` as a `CategoryMap`: the id of every embedding index, and ``.o2i`` (id → index),
        as fastai's ``dls.classes[name]``."""
        if getattr(self, "_classes", None) is None:
            self._classes = CategoryMap([UNKNOWN, *self.ids])
        return self._classes

    def __contains__(self, v: Any) -> bool:
        return self._index.get_indexer([_plain(v)])[0] >= 0

    def encode(self, values: Sequence[Any] | pd.Series | np.ndarray, unknown: str = "error") -> torch.Tensor:
        """Indices (``int64``) of ``values``; unknown ids raise `UnknownIdError` (``unknown="error"``) or map to
        index 0 (``unknown="fallback"``)."""
        if unknown not in ("error", "fallback"):
            raise ValueError(f"unknown must be 'error' or 'fallback', got {unknown!r}")
        if isinstance(values, (pd.Series, np.ndarray, pd.Index)):
            query = pd.Index(np.asarray(values))
        else:
            query = pd.Index([_plain(v) for v in values], dtype=object)
        idx = self._index.get_indexer(query) + 1
        if unknown == "error" and (idx == 0).any():
            missing = list(dict.fromkeys(_plain(query[i]) for i in np.flatnonzero(idx == 0)))
            example = self.ids[:3]
            raise UnknownIdError(
                f"{len(missing)} {self.name} id(s) never seen in training, e.g. {missing[0]!r} "
                f"({type(missing[0]).__name__}); the known {self.name} ids are {type(example[0]).__name__}s such as "
                f"{example}. A new {self.name} has no learned embedding: retrain with its ratings, or pass "
                "unknown='fallback' to dls.test_dl to predict from the other side's bias and the global bias only.")
        return torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))

    def decode(self, idxs: Iterable[int] | torch.Tensor) -> list[Any]:
        """The ids of embedding indices (index 0 gives ``'#na#'``)."""
        classes = self.classes
        idxs = idxs.tolist() if isinstance(idxs, torch.Tensor) else list(idxs)
        return [classes[int(i)] for i in idxs]

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, self.ids[:5])) + (", ..." if len(self.ids) > 5 else "")
        return f"IdMap({self.name!r}: {len(self.ids)} ids [{shown}] + unknown)"
