"""`CategoryMap`: a vocabulary that is a plain list of classes plus the reverse map ``o2i``.

One class for every place that maps values to integer codes: tabular `Categorify` (one per column),
the collab user/item ids (``dls.classes['title']``). It is a ``list`` subclass, so it prints, compares,
slices, prints and JSON-serialises as the list of classes it is.

>>> vocab = CategoryMap(["#na#", "blue", "red"])
>>> vocab.o2i["red"], vocab[1], vocab == ["#na#", "blue", "red"]
(2, 'blue', True)
>>> vocab.map_objs(["red", "blue"]), vocab.map_ids([0, 2])
([2, 1], ['#na#', 'red'])
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["CategoryMap"]


class CategoryMap(list):
    """The classes in code order (``vocab[i]`` is the class of code ``i``) with ``o2i``: class → code.

    Args:
        items: the classes, already in code order (duplicates raise: each class needs one code).
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
