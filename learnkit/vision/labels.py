"""Labelling: the label of each file (label functions, regular expressions, parent folders) and the vocab.

A label function that raises, or returns ``None``/NaN, gets an error naming the file (or, with
``on_error='skip'``, the file is left out and reported).

>>> parent_label("train/cat/1.jpg"), RegexLabeller(r"^(.+)_\\d+\\.jpg$")("images/great_pyrenees_12.jpg")
('cat', 'great_pyrenees')
>>> make_vocab([["a", "b"], ["b"]], multi=True)
['a', 'b']
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["parent_label", "RegexLabeller", "make_labels", "make_vocab", "py_value"]


def parent_label(o: str | Path) -> str:
    """The name of the folder holding the file: ``train/cat/1.jpg`` → ``'cat'``."""
    return Path(o).parent.name


class RegexLabeller:
    """Label = the first group of ``pat`` searched in the file name (``match_name``) or the full path."""

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


def py_value(v: Any) -> Any:
    """A numpy/pandas scalar as the plain Python value (JSON-able); other values unchanged."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v


def make_labels(items: Sequence[Any], label_func: Callable[[Any], Any], on_error: str
                ) -> tuple[list[Any], list[tuple[int, str]]]:
    """``label_func`` over the items; failures raise a ``ValueError`` naming the item, or are collected."""
    labels: list[Any] = []
    failures: list[tuple[int, str]] = []
    for i, o in enumerate(items):
        try:
            lab = label_func(o)
            if lab is None or (isinstance(lab, float) and lab != lab):
                raise ValueError("the label is missing (None/NaN)")
        except Exception as e:  # noqa: BLE001 - a user function can raise anything; we name the file
            msg = f"labelling {o} failed: {type(e).__name__}: {e}"
            if on_error == "raise":
                raise ValueError(msg + ". Fix the label function or the file name, or pass on_error='skip'.") from e
            failures.append((i, msg))
            lab = None
        labels.append(lab)
    return labels, failures


def make_vocab(labels: list[Any], vocab: Sequence[Any] | None = None, multi: bool = False,
               example: Any = None) -> list[Any]:
    """The sorted distinct labels (or check ``vocab`` covers them). Single-label tasks need two classes;
    ``example`` (a file) is named in that error."""
    flat = [v for labs in labels for v in labs] if multi else labels
    if vocab is not None:
        vocab = [py_value(v) for v in vocab]
        unknown = sorted({v for v in flat} - set(vocab), key=str)
        if unknown:
            raise ValueError(f"label(s) {unknown[:5]} are not in the given vocab {vocab[:10]}")
        return vocab
    found = set(flat)
    try:
        vocab = sorted(found)
    except TypeError as e:
        raise ValueError(f"labels mix types that cannot be sorted ({sorted({type(v).__name__ for v in found})}); "
                         "make the label function return one type (e.g. str)") from e
    if not multi and len(vocab) < 2:
        raise ValueError(f"all {len(labels)} images have the same label {vocab[0]!r} (e.g. {example}): a classifier "
                         "needs at least two classes. Check the label function / folders.")
    if multi and not vocab:
        raise ValueError("no image has any label; check label_col and label_delim")
    return vocab
