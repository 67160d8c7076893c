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
import os
from typing import Any

import numpy as np

__all__ = ["check_int", "check_number", "check_batch_size", "is_int", "check_lr", "check_wd", "check_moms",
           "check_one_cycle", "check_fine_tune", "max_image_pixels"]


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


# --- learning rates and schedule parameters: one check wherever they enter (fit, fit_one_cycle, fine_tune...) --
def _finite_positive(v: Any) -> bool:
    return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            and math.isfinite(v) and v > 0)


def check_lr(lr: Any, name: str = "learning rate") -> None:
    """Refuse a learning rate (a number, ``slice(lo, hi)``, ``slice(hi)`` or one per parameter group) that is
    not a finite positive number: ``inf`` or ``1e400`` turn the weights into NaN at the first step, ``0`` or a
    negative one never trains or trains backwards.

    >>> check_lr(slice(1e-5, 1e-3))
    >>> check_lr(float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: learning rate must be a positive number (or a slice of two) and finite, got inf
    """
    vals = [lr.start, lr.stop] if isinstance(lr, slice) else (list(lr) if isinstance(lr, (list, tuple)) else [lr])
    if isinstance(lr, slice) and lr.stop is None:
        vals = [None]
    if not vals or any(v is not None and not _finite_positive(v) for v in vals) or all(v is None for v in vals):
        raise ValueError(f"{name} must be a positive number (or a slice of two) and finite, got {lr!r}")


def check_wd(wd: Any) -> None:
    """Weight decay must be a finite number >= 0, or ``None`` (the optimizer's default).

    >>> check_wd(0.01); check_wd(None)
    >>> check_wd(float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: wd (weight decay) must be a number >= 0 (and finite) or None, got inf
    """
    ok = wd is None or (isinstance(wd, (int, float, np.integer, np.floating)) and not isinstance(wd, (bool, np.bool_))
                        and math.isfinite(wd) and wd >= 0)
    if not ok:
        raise ValueError(f"wd (weight decay) must be a number >= 0 (and finite) or None, got {wd!r}")


def check_moms(moms: Any) -> None:
    """``moms``: ``None`` (leave momentum alone) or three momentums ``(start, middle, end)``, each in ``[0, 1)``
    (Adam's beta1 or SGD's momentum; 1 or more never forgets a gradient, a negative one trains backwards).

    >>> check_moms((0.95, 0.85, 0.95)); check_moms(None)
    >>> check_moms((2, -1, 5))
    Traceback (most recent call last):
    ...
    ValueError: moms must be None or three momentums (start, middle, end), each a number in [0, 1), got (2, -1, 5)
    """
    if moms is None:
        return
    ok = isinstance(moms, (list, tuple)) and len(moms) == 3 and all(
        isinstance(m, (int, float, np.integer, np.floating)) and not isinstance(m, (bool, np.bool_))
        and math.isfinite(m) and 0 <= m < 1 for m in moms)
    if not ok:
        raise ValueError(f"moms must be None or three momentums (start, middle, end), each a number in [0, 1), "
                         f"got {moms!r}")


def _check_pct(name: str, v: Any) -> None:
    ok = (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
          and 0 <= v <= 1)
    if not ok:
        raise ValueError(f"{name} must be in [0, 1], got {v!r}")


def check_one_cycle(div: Any = 25.0, div_final: Any = 1e5, pct_start: Any = 0.25, moms: Any = None) -> None:
    """The one-cycle parameters (`Learner.fit_one_cycle`, `OneCycleScheduler`): ``div`` and ``div_final`` finite
    and positive (the cycle starts at ``lr_max / div`` and ends at ``lr_max / div_final``), ``pct_start`` in
    ``[0, 1]``, ``moms`` as `check_moms`.

    >>> check_one_cycle(div=25, div_final=1e5, pct_start=0.25)
    >>> check_one_cycle(div=0)
    Traceback (most recent call last):
    ...
    ValueError: div must be a number > 0, got 0 (the schedule starts at lr_max / div)
    """
    for name, v, where in (("div", div, "starts at lr_max / div"), ("div_final", div_final, "ends at lr_max / div_final")):
        if not _finite_positive(v):
            raise ValueError(f"{name} must be a number > 0, got {v!r} (the schedule {where})")
    _check_pct("pct_start", pct_start)
    check_moms(moms)


def check_fine_tune(epochs: Any, base_lr: Any, freeze_epochs: Any, lr_mult: Any, pct_start: Any, div: Any,
                    wd: Any = None) -> None:
    """Every argument of `Learner.fine_tune`, checked before the frozen phase starts (a bad ``div`` would
    otherwise fail only after the head had trained).

    >>> check_fine_tune(1, 2e-3, 1, 100, 0.3, 5.0)
    >>> check_fine_tune(1, 2e-3, 1, 0, 0.3, 5.0)
    Traceback (most recent call last):
    ...
    ValueError: lr_mult must be a number > 0, got 0 (the body trains at base_lr / lr_mult)
    """
    check_int("epochs", epochs, low=0)
    check_int("freeze_epochs", freeze_epochs, low=0)
    check_lr(base_lr)
    if not _finite_positive(lr_mult):
        raise ValueError(f"lr_mult must be a number > 0, got {lr_mult!r} (the body trains at base_lr / lr_mult)")
    check_one_cycle(div=div, pct_start=pct_start)
    check_wd(wd)


def max_image_pixels() -> int | None:
    """The decompression-bomb limit: ``LEARNKIT_MAX_IMAGE_PIXELS`` (``0``/``none`` turns it off), else
    Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89 million pixels). Images are refused above it, and so are
    the image sizes of an export's transforms.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"LEARNKIT_MAX_IMAGE_PIXELS": "1000000"}):
    ...     max_image_pixels()
    1000000
    """
    env = os.environ.get("LEARNKIT_MAX_IMAGE_PIXELS")
    if env is not None and env.strip():
        if env.strip().lower() in ("0", "none", "off"):
            return None
        try:
            return int(env)
        except ValueError:
            raise ValueError(f"LEARNKIT_MAX_IMAGE_PIXELS must be a number of pixels or 'none', got {env!r}") from None
    from PIL import Image
    return Image.MAX_IMAGE_PIXELS
