"""Getting items and labels: `get_files`, `ColReader`, `using_attr`, `RegexLabeller`, `parent_label`.

These are the small functions a `DataBlock` takes as ``get_items``, ``get_x`` and ``get_y``, under fastai's
names. They only look at names and table cells, never at file contents, so they are cheap to run on every
item in the main process.

>>> parent_label("train/cat/1.jpg"), RegexLabeller(r"^(.+)_\\d+\\.jpg$")("images/great_pyrenees_12.jpg")
('cat', 'great_pyrenees')
>>> import pandas as pd
>>> ColReader("name", pref="img/", suff=".png")(pd.Series({"name": "a"}))
'img/a.png'
>>> using_attr(str.upper, "name")(Path("x/ab.jpg"))
'AB.JPG'
"""
from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .paths import expand_path

__all__ = ["get_files", "get_text_files", "ColReader", "using_attr", "RegexLabeller", "parent_label", "py_value", "make_labels",
           "make_vocab", "Lookup", "DatasetField", "DatasetLabel", "is_missing", "sorted_classes"]


def get_files(path: str | os.PathLike, extensions: Iterable[str] | None = None, recurse: bool = True,
              folders: Sequence[str] | None = None) -> list[Path]:
    """Files under ``path`` (sorted; hidden files and folders skipped), optionally only those whose suffix is in
    ``extensions`` (case-insensitive) and only inside the sub-folders ``folders``. Symlinked folders are
    followed (each real folder once, so a link loop ends).

    Raises ``FileNotFoundError`` naming ``path`` (or the missing sub-folder) when it does not exist.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("train/cat/1.jpg", "train/dog/2.PNG", "train/notes.txt", "valid/cat/3.jpg"):
    ...     (root / name).parent.mkdir(parents=True, exist_ok=True)
    ...     (root / name).touch()
    >>> [f.relative_to(root).as_posix() for f in get_files(root, extensions=[".jpg", ".png"])]
    ['train/cat/1.jpg', 'train/dog/2.PNG', 'valid/cat/3.jpg']
    >>> [f.name for f in get_files(root, folders=["valid"])]
    ['3.jpg']
    """
    path = expand_path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"folder {path} does not exist (or is not a folder)")
    exts = None if extensions is None else {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    roots = [path] if not folders else [path / f for f in folders]
    for r in roots:
        if not r.is_dir():
            raise FileNotFoundError(f"folder {r} does not exist; the sub-folders of {path} are "
                                    f"{sorted(p.name for p in path.iterdir() if p.is_dir())}")

    def keep(name: str) -> bool:
        return not name.startswith(".") and (exts is None or os.path.splitext(name)[1].lower() in exts)
    # sort keys are the path parts (Path's own order) built once per folder: a pass over a million files stays
    # in seconds (building a Path per file and comparing Paths is ten times slower)
    found: list[tuple[tuple[str, ...], Path, str]] = []
    for root in roots:
        if recurse:
            seen: set[str] = {os.path.realpath(root)}  # symlinked folders are followed once (no loops)
            for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                kept = []
                for d in sorted(d for d in dirnames if not d.startswith(".")):
                    real = os.path.realpath(os.path.join(dirpath, d))
                    if real not in seen:
                        seen.add(real)
                        kept.append(d)
                dirnames[:] = kept
                names = [f for f in filenames if keep(f)]
                if names:
                    base = Path(dirpath)
                    found.extend(((*base.parts, f), base, f) for f in names)
        else:
            found.extend(((*p.parts,), p.parent, p.name) for p in root.iterdir() if p.is_file() and keep(p.name))
    found.sort(key=lambda t: t[0])
    return [base / f for _, base, f in found]


def get_text_files(path: str | os.PathLike, recurse: bool = True, folders: Sequence[str] | None = None) -> list[Path]:
    """The ``.txt`` files under ``path`` (sorted), optionally only inside the sub-folders ``folders``.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); (d / "a.txt").write_text("hi"); (d / "b.csv").write_text("")
    2
    0
    >>> [f.name for f in get_text_files(d)]
    ['a.txt']
    """
    return get_files(path, extensions=[".txt"], recurse=recurse, folders=folders)


def parent_label(o: str | Path) -> str:
    """The name of the folder holding the file: ``train/cat/1.jpg`` → ``'cat'``.

    >>> parent_label("data/train/cat/1.jpg")  # DataBlock(..., get_y=parent_label)
    'cat'
    >>> parent_label(Path("pets/great_pyrenees/12.jpg"))
    'great_pyrenees'
    """
    return Path(o).parent.name


class RegexLabeller:
    """Label = the first group of ``pat`` searched in the file name (``match_name``) or the full path.

    A name the pattern does not match raises a ``ValueError`` naming the pattern and the name.

    >>> RegexLabeller(r"^(.+)_\\d+\\.jpg$")("images/great_pyrenees_12.jpg")  # the file name
    'great_pyrenees'
    >>> RegexLabeller(r"/(\\w+)/\\w+/[^/]+$", match_name=False)("data/cats/train/1.jpg")  # the whole path
    'cats'
    >>> RegexLabeller(r"^(.+)_\\d+\\.jpg$")("notes.txt")
    Traceback (most recent call last):
    ...
    ValueError: the pattern '^(.+)_\\\\d+\\\\.jpg$' does not match 'notes.txt'
    """

    def __init__(self, pat: str, match_name: bool = True):
        self.pat, self.match_name = re.compile(pat), match_name
        if self.pat.groups < 1:
            raise ValueError(f"the pattern {pat!r} needs a group, e.g. r'^(.+)_\\d+.jpg$'")

    def __call__(self, o: str | Path) -> str:
        s = Path(o).name if self.match_name else Path(o).as_posix()
        m = self.pat.search(s)
        if m is None:
            raise ValueError(f"the pattern {self.pat.pattern!r} does not match {s!r}")
        return m.group(1)

    def __repr__(self) -> str:
        return f"RegexLabeller({self.pat.pattern!r})"


class using_attr:  # noqa: N801 - fastai's public name
    """``f(getattr(o, attr))``: e.g. ``using_attr(RegexLabeller(pat), 'name')`` labels a path by its name.

    >>> label = using_attr(RegexLabeller(r"^([a-z_]+)_\\d+"), "name")  # the regex on path.name
    >>> label(Path("images/basset_hound_7.jpg"))
    'basset_hound'
    """

    def __init__(self, f: Callable[[Any], Any], attr: str):
        if not callable(f):
            raise TypeError(f"using_attr needs a function, got {f!r}")
        self.f, self.attr = f, attr

    def __call__(self, o: Any) -> Any:
        try:
            v = getattr(o, self.attr)
        except AttributeError:
            raise AttributeError(f"using_attr: {type(o).__name__} {o!r} has no attribute {self.attr!r}") from None
        return self.f(v)

    def __repr__(self) -> str:
        return f"using_attr({self.f!r}, {self.attr!r})"


class ColReader:
    """Read column(s) ``cols`` (names or positions) of a data-frame row, with ``pref``/``suff`` added to text
    values and, with ``label_delim``, the value split into a list (multi-label).

    A missing column raises a ``KeyError`` listing the row's columns.

    >>> import pandas as pd
    >>> row = pd.Series({"fname": "a1", "tags": "cat dog", "score": 3})
    >>> ColReader("fname", pref="images/", suff=".jpg")(row), ColReader("tags", label_delim=" ")(row)
    ('images/a1.jpg', ['cat', 'dog'])
    >>> ColReader(["fname", 2])(row)  # several columns, by name or position: a list
    ['a1', 3]
    """

    def __init__(self, cols: int | str | Sequence[int | str], pref: str | os.PathLike = "", suff: str = "",
                 label_delim: str | None = None):
        self.cols = list(cols) if isinstance(cols, (list, tuple)) else [cols]
        self.pref, self.suff, self.label_delim = pref, suff, label_delim

    def _one(self, row: Any, c: int | str) -> Any:
        if isinstance(c, int) and not isinstance(c, bool):
            if not -len(row) <= c < len(row):
                raise IndexError(f"column index {c} is out of range; the row has {len(row)} columns")
            v = row.iloc[c] if hasattr(row, "iloc") else row[c]
        else:
            if hasattr(row, "index") and c not in row.index:
                raise KeyError(f"column {c!r} not found; the columns are {list(row.index)}")
            v = row[c]
        if self.pref or self.suff:
            v = (str(self.pref) if isinstance(self.pref, str) else os.fspath(self.pref) + os.sep) + f"{v}{self.suff}"
        if self.label_delim is not None:
            v = [] if v is None or (isinstance(v, float) and v != v) else [t for t in str(v).split(self.label_delim) if t]
        return py_value(v)

    def __call__(self, row: Any) -> Any:
        out = [self._one(row, c) for c in self.cols]
        return out[0] if len(out) == 1 else out

    def __repr__(self) -> str:
        return f"ColReader({self.cols if len(self.cols) > 1 else self.cols[0]!r})"


class Lookup:
    """The value of an item from a table built once in the main process, keyed by ``str(item)``; a picklable
    ``get_y`` for loader workers (the labels of ``ImageDataLoaders.from_lists``, the masks of segmentation).

    >>> Lookup({"a.jpg": "cat"})(Path("a.jpg"))
    'cat'
    """

    def __init__(self, table: dict[str, Any]):
        self.table = table

    def __call__(self, item: Any) -> Any:
        try:
            return self.table[str(item)]
        except KeyError:
            raise KeyError(f"{item} is not in the table of {len(self.table)} items") from None


class DatasetField:
    """Field ``field`` of item ``(k, i)`` = ``dsets[k][i][field]`` of torch datasets (e.g. the image of a
    torchvision dataset's ``(image, label)`` pairs), for a `DataBlock` over several datasets."""

    def __init__(self, dsets: Sequence[Any], field: int = 0):
        self.dsets, self.field = list(dsets), field

    def __call__(self, ref: tuple[int, int]) -> Any:
        return self.dsets[ref[0]][ref[1]][self.field]


class DatasetLabel:
    """The class name ``classes[y]`` of item ``(k, i)`` of torch datasets of ``(x, y)`` pairs; ``y`` comes from
    the dataset's ``targets`` when it has them (torchvision's do: no image is read to label)."""

    def __init__(self, dsets: Sequence[Any], classes: Sequence[Any]):
        self.dsets, self.classes = list(dsets), list(classes)

    def __call__(self, ref: tuple[int, int]) -> Any:
        ds = self.dsets[ref[0]]
        targets = getattr(ds, "targets", None)
        y = targets[ref[1]] if targets is not None else ds[ref[1]][1]
        return self.classes[int(y)]


def py_value(v: Any) -> Any:
    """A numpy/pandas scalar as the plain Python value (JSON-able); other values unchanged."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) and getattr(v, "ndim", 0) == 0 else v


def is_missing(v: Any) -> bool:
    """Whether a label is missing: ``None``, a float NaN (NumPy's too), pandas' ``NA`` or ``NaT``.

    >>> import pandas as pd
    >>> [is_missing(v) for v in (None, float("nan"), pd.NA, pd.NaT, "NA", 0)]
    [True, True, True, True, False, False]
    """
    if v is None:
        return True
    if isinstance(v, float) or type(v).__module__ == "numpy" and hasattr(v, "dtype") and v.dtype.kind == "f":
        return math.isnan(v) if getattr(v, "ndim", 0) == 0 else False
    pd = sys.modules.get("pandas")
    return pd is not None and (v is pd.NA or v is pd.NaT)


def sorted_classes(values: Iterable[Any], what: str = "labels", fix: str = "") -> list[Any]:
    """The distinct values, sorted: the classes of a classifier. Numbers and strings mixed (``1`` and ``'1'``,
    which would silently be two classes), or other values that do not sort, raise a ``ValueError`` naming one of
    each; ``fix`` is added to it (how to make them one type).

    >>> sorted_classes(["dog", "cat", "dog"])
    ['cat', 'dog']
    >>> sorted_classes([1, "1", 2])
    Traceback (most recent call last):
    ...
    ValueError: labels mix types: 1 (int) and '1' (str) would be two different classes. Make them one type, e.g. all strings
    """
    found = list(dict.fromkeys(py_value(v) for v in values))
    strs = [v for v in found if isinstance(v, str)]
    others = [v for v in found if not isinstance(v, str)]
    try:
        if strs and others:
            raise TypeError
        return sorted(found)
    except TypeError:
        by_type: dict[str, Any] = {}
        for v in found:
            by_type.setdefault(type(v).__name__, v)
        s_ex = next((v for v in strs if any(str(o) == v for o in others)), strs[0] if strs else None)
        o_ex = next((o for o in others if str(o) == s_ex), others[0] if others else None)
        a, b = (o_ex, s_ex) if strs and others else tuple(by_type.values())[:2]
        raise ValueError(f"{what} mix types: {a!r} ({type(a).__name__}) and {b!r} ({type(b).__name__}) would be two "
                         f"different classes. Make them one type{fix or ', e.g. all strings'}") from None


def make_labels(items: Sequence[Any], label_func: Callable[[Any], Any], on_error: str
                ) -> tuple[list[Any], list[tuple[int, str]]]:
    """``label_func`` over the items; failures raise a ``ValueError`` naming the item, or are collected."""
    labels: list[Any] = []
    failures: list[tuple[int, str]] = []
    for i, o in enumerate(items):
        try:
            lab = label_func(o)
            if is_missing(lab):
                raise ValueError(f"the label is missing ({lab!r})")
        except Exception as e:  # noqa: BLE001 - a user function can raise anything; we name the file
            msg = f"labelling {o} failed: {type(e).__name__}: {e}"
            if on_error == "raise":
                raise ValueError(msg + ". Fix the label function or the file name, or pass on_error='skip'.") from e
            failures.append((i, msg))
            lab = None
        labels.append(lab)
    return labels, failures


def make_vocab(labels: list[Any], vocab: Sequence[Any] | None = None, multi: bool = False,
               example: Any = None, what: str = "images", fix: str = "") -> list[Any]:
    """The sorted distinct labels (or check ``vocab`` covers them). Single-label tasks need two classes, and
    labels of one type (`sorted_classes`); ``example`` (a file) is named in the error, ``what`` names the items
    (``"images"``, ``"texts"``), ``fix`` says how to make the labels one type.

    >>> make_vocab(["dog", "cat", "dog"])
    ['cat', 'dog']
    >>> make_vocab(["pos", "pos"], what="texts", example="row 0")
    Traceback (most recent call last):
    ...
    ValueError: all 2 texts have the same label 'pos' (e.g. row 0): a classifier needs at least two classes. ...
    """
    flat = [v for labs in labels for v in labs] if multi else labels
    if vocab is not None:
        vocab = [py_value(v) for v in vocab]
        unknown = sorted({v for v in flat} - set(vocab), key=str)
        if unknown:
            raise ValueError(f"label(s) {unknown[:5]} are not in the given vocab {vocab[:10]}")
        return vocab
    missing = next((v for v in flat if is_missing(v)), "none")
    if missing != "none":
        raise ValueError(f"a label is missing ({missing!r}); drop or fill the unlabelled {what} first")
    vocab = sorted_classes(flat, fix=fix or " (e.g. make the label function return str)")
    if not multi and len(vocab) < 2:
        shown = f" (e.g. {example})" if example is not None else ""
        raise ValueError(f"all {len(labels)} {what} have the same label {vocab[0]!r}{shown}: a classifier needs at "
                         "least two classes. Check the labels (the label function, folders or column), and that the "
                         "split left more than one class in training.")
    if multi and not vocab:
        raise ValueError(f"no {what[:-1] if what.endswith('s') else what} has any label; check label_col and label_delim")
    return vocab
