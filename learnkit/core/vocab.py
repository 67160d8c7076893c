"""`CategoryMap`: a vocabulary that is a plain list of classes plus the reverse map ``o2i``; embedding sizes.

One class for every place that maps values to integer codes: tabular `Categorify` (one per column),
the collab user/item ids (``dls.classes['title']``). It is a ``list`` subclass, so it prints, compares,
slices, prints and JSON-serialises as the list of classes it is.

>>> vocab = CategoryMap(["#na#", "blue", "red"])
>>> vocab.o2i["red"], vocab[1], vocab == ["#na#", "blue", "red"]
(2, 'blue', True)
>>> vocab.map_objs(["red", "blue"]), vocab.map_ids([0, 2])
([2, 1], ['#na#', 'red'])

`get_emb_sz` sizes one embedding per categorical variable of anything with ``cat_names`` and
``classes`` (a `TabularPandas`, `TabularDataLoaders` or `CollabDataLoaders`), by fastai's rule
`emb_sz_rule`: ``min(600, round(1.6 * n ** 0.56))`` for ``n`` codes.

>>> [emb_sz_rule(n) for n in (3, 10, 100, 944, 1650)]
[3, 6, 21, 74, 101]
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from .validation import check_int

__all__ = ["CategoryMap", "NA_CLASS", "emb_sz_rule", "emb_sizes", "get_emb_sz"]

#: Code 0 of a categorical column (tabular) or an id map (collab): missing values and values never seen in training.
NA_CLASS = "#na#"


class CategoryMap(list):
    """The classes in code order (``vocab[i]`` is the class of code ``i``) with ``o2i``: class → code.

    Args:
        items: the classes, already in code order (duplicates raise: each class needs one code).

    >>> vocab = CategoryMap(["#na#", "small", "large"])  # code 0 for missing values, by convention
    >>> vocab.o2i["large"], vocab.map_objs(["small", "large"]), vocab.map_ids([0, 1])
    (2, [1, 2], ['#na#', 'small'])
    >>> vocab.append("huge")
    Traceback (most recent call last):
    ...
    TypeError: a CategoryMap is fixed once built (the codes would move); build a new one instead
    """

    def __init__(self, items: Iterable[Any] = ()):
        super().__init__(items)
        self.o2i: dict[Any, int] = {}
        for i, v in enumerate(self):
            if v in self.o2i:
                raise ValueError(f"CategoryMap: class {v!r} appears twice (codes {self.o2i[v]} and {i}); "
                                 "each class needs exactly one code")
            self.o2i[v] = i

    def map_objs(self, objs: Iterable[Any]) -> list[int]:
        """Codes of ``objs``; an unknown class raises a `KeyError` naming it."""
        out = []
        for o in objs:
            if o not in self.o2i:
                raise KeyError(f"{o!r} is not in this vocabulary ({len(self)} classes, e.g. {list(self[:5])})")
            out.append(self.o2i[o])
        return out

    def map_ids(self, ids: Iterable[int]) -> list[Any]:
        """Classes of the codes ``ids``."""
        return [self[int(i)] for i in ids]

    def __reduce__(self) -> tuple:  # pickle/copy rebuild ``o2i`` from the list
        return (type(self), (list(self),))

    def _frozen(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a CategoryMap is fixed once built (the codes would move); build a new one instead")

    append = extend = insert = remove = pop = clear = sort = reverse = _frozen  # type: ignore[assignment]
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _frozen  # type: ignore[assignment]


def as_category_map(items: Sequence[Any] | None) -> CategoryMap | None:
    """``items`` as a `CategoryMap` (``None`` stays ``None``; a CategoryMap is returned as is)."""
    if items is None or isinstance(items, CategoryMap):
        return items
    return CategoryMap(items)


def emb_sz_rule(n_cat: int) -> int:
    """Embedding width for a variable with ``n_cat`` codes: ``min(600, round(1.6 * n_cat ** 0.56))``.

    >>> emb_sz_rule(7), emb_sz_rule(1000), emb_sz_rule(10**7)  # days of the week, stores, users (capped at 600)
    (5, 77, 600)
    """
    if n_cat < 1:
        raise ValueError(f"a categorical variable needs at least one code, got {n_cat}")
    return int(min(600, round(1.6 * n_cat ** 0.56)))


def emb_sizes(cardinalities: Sequence[int], names: Sequence[str],
              sz_dict: Mapping[str, int] | None = None) -> list[tuple[int, int]]:
    """``(n_codes, width)`` per variable: `emb_sz_rule` unless ``sz_dict`` names the variable.

    >>> emb_sizes([8, 1000], ["weekday", "store"], sz_dict={"store": 50})  # (codes, width) per variable
    [(8, 5), (1000, 50)]
    """
    sz_dict = dict(sz_dict or {})
    unknown = sorted(set(sz_dict) - set(names), key=str)
    if unknown:
        raise KeyError(f"emb_szs names column(s) {unknown} that are not categorical columns; those are {list(names)}")
    out = []
    for n, name in zip(cardinalities, names):
        w = sz_dict.get(name, emb_sz_rule(n))
        out.append((int(n), check_int(f"embedding width for column {name!r}", w)))
    return out


def get_emb_sz(to: Any, sz_dict: Mapping[str, int] | None = None) -> list[tuple[int, int]]:
    """fastai's ``get_emb_sz(to_or_dls, sz_dict=None)``: ``(n_codes, width)`` for each of ``to.cat_names``,
    ``n_codes = len(to.classes[name])`` (a `TabularPandas`, `TabularDataLoaders` or `CollabDataLoaders`).

    >>> from types import SimpleNamespace
    >>> to = SimpleNamespace(cat_names=["weekday", "store"],  # stands for a TabularPandas or a TabularDataLoaders
    ...                      classes={"weekday": CategoryMap(["#na#", "mon", "tue"]),
    ...                               "store": CategoryMap(range(1000))})
    >>> get_emb_sz(to), get_emb_sz(to, sz_dict={"store": 16})
    ([(3, 3), (1000, 77)], [(3, 3), (1000, 16)])
    """
    names, classes = getattr(to, "cat_names", None), getattr(to, "classes", None)
    if names is None or not isinstance(classes, Mapping):
        raise TypeError(f"get_emb_sz takes a TabularPandas, TabularDataLoaders or CollabDataLoaders (something with "
                        f"cat_names and classes), got {type(to).__name__}; for raw sizes use emb_sizes(cards, names)")
    missing = [n for n in names if n not in classes]
    if missing:
        raise KeyError(f"categorical column(s) {missing} have no classes (is Categorify among the procs?)")
    return emb_sizes([len(classes[n]) for n in names], names, sz_dict)
