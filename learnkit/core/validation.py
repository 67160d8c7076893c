"""Argument checks shared by every module: one wording for the same mistake, wherever it is made.

Each check returns the value it accepted, so a constructor reads ``self.bs = check_int("bs", bs)``.
``True`` is an ``int`` to Python but never a count or a size here, so the integer checks refuse booleans.

>>> check_int("bs", 64)
64
>>> check_int("bs", 0)
Traceback (most recent call last):
...
ValueError: bs must be a positive integer, got 0
>>> check_number("wd", 0.01, low=0)
0.01
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_int", "check_number", "check_batch_size", "is_int"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or NumPy) and not a boolean.

    >>> is_int(3), is_int(True), is_int(3.0)
    (True, False, False)
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, low: int | None = 1, high: int | None = None, what: str = "") -> int:
    """``value`` as an ``int`` when it is an integer in ``[low, high]`` (either bound may be ``None``);
    a ``ValueError`` naming ``name`` otherwise. ``what`` is added to the message (``"(batch size)"``).

    >>> check_int("n_epoch", 0, low=0)
    0
    >>> check_int("max_len", 2, low=3, high=512)
    Traceback (most recent call last):
    ...
    ValueError: max_len must be an integer between 3 and 512, got 2
    """
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        label = f"{name} {what}".strip() if what else name
        kind = "integer"
        if low in (0, 1) and high is None:
            kind, bound = ("positive integer" if low == 1 else "non-negative integer"), ""
        elif low is not None and high is not None:
            bound = f" between {low} and {high}"
        elif low is not None:
            bound = f" >= {low}"
        elif high is not None:
            bound = f" <= {high}"
        else:
            bound = ""
        article = "an" if kind == "integer" else "a"
        raise ValueError(f"{label} must be {article} {kind}{bound}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                 strict: bool = False, what: str = "") -> float:
    """``value`` as a ``float`` when it is a finite real number within the bounds (``strict``: ``> low``
    rather than ``>= low``); a ``ValueError`` naming ``name`` otherwise.

    >>> check_number("lr", 1e-3, low=0, strict=True)
    0.001
    >>> check_number("drop_mult", -1, low=0)
    Traceback (most recent call last):
    ...
    ValueError: drop_mult must be a number >= 0, got -1
    """
    ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
          and math.isfinite(value))
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        label = f"{name} {what}".strip() if what else name
        parts = []
        if low is not None:
            parts.append(f"{'>' if strict else '>='} {low}")
        if high is not None:
            parts.append(f"<= {high}")
        bound = (" " + " and ".join(parts)) if parts else ""
        raise ValueError(f"{label} must be a number{bound}, got {value!r}")
    return float(value)


def check_batch_size(bs: Any) -> int:
    """The batch size as an ``int`` >= 1, with the one message every loader gives.

    >>> check_batch_size(32)
    32
    """
    return check_int("bs", bs, low=1, what="(batch size)")
