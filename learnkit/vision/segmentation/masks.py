"""Segmentation masks: class codes, the void code, and reading masks as integer class maps.

A mask is an 8-bit single-channel image (PIL mode ``L``, ``P`` or ``1``) whose pixel values are class
indices into ``codes``. `load_mask` decodes one and checks it: its values must be indices of ``codes``
(or the void code) and, when the image is given, its size must be the image's.

>>> read_codes(["Sky", "Road", "Void"])
['Sky', 'Road', 'Void']
>>> resolve_void_code("Void", ["Sky", "Road", "Void"])
2
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ...core.paths import expand_path

__all__ = ["read_codes", "resolve_void_code", "load_mask", "check_mask_values", "mask_size", "image_size"]

_MASK_MODES = ("L", "P", "1")


def read_codes(codes: str | Path | Sequence[str]) -> list[str]:
    """Class names from a list or from a text file with one name per line (line ``i`` = class ``i``).

    >>> read_codes(("a", "b"))
    ['a', 'b']
    """
    if isinstance(codes, (str, Path)):
        p = Path(codes)
        if not p.is_file():
            raise FileNotFoundError(f"codes file {p} not found; pass codes as a list of class names or the path of a "
                                    "text file with one class name per line")
        names = [line.strip() for line in p.read_text(encoding="utf-8-sig").splitlines()]
        while names and not names[-1]:
            names.pop()
        if not names:
            raise ValueError(f"codes file {p} is empty; it must hold one class name per line")
        if "" in names:
            raise ValueError(f"codes file {p} has an empty line at line {names.index('') + 1}; every line names a class")
        return names
    if codes is None:
        raise ValueError("codes is required: the list of class names, index i naming mask value i "
                         "(or the path of a codes.txt file)")
    names = [str(c) for c in codes]
    if not names:
        raise ValueError("codes is empty: give at least one class name")
    if len(names) > 256:
        raise ValueError(f"{len(names)} codes given, but 8-bit masks hold at most 256 classes")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ValueError(f"codes must be distinct; {dup[:5]} appear more than once")
    return names


def resolve_void_code(void_code: int | str | None, codes: Sequence[str]) -> int | None:
    """The mask value ignored by the loss and the metrics: a class name from ``codes``, an index, or ``None``.

    An integer outside ``codes`` (e.g. 255, the "ignore" value of Pascal VOC masks) is allowed.

    >>> codes = ["road", "car", "void"]
    >>> resolve_void_code("void", codes), resolve_void_code(255, codes), resolve_void_code(None, codes)
    (2, 255, None)
    """
    if void_code is None:
        return None
    if isinstance(void_code, str):
        if void_code not in codes:
            raise ValueError(f"void_code {void_code!r} is not one of the codes {list(codes)[:12]}"
                             f"{' ...' if len(codes) > 12 else ''}")
        return list(codes).index(void_code)
    if isinstance(void_code, bool) or not isinstance(void_code, (int, np.integer)) or not 0 <= int(void_code) <= 255:
        raise ValueError(f"void_code must be a class name, an integer mask value in 0..255 or None, got {void_code!r}")
    return int(void_code)


def _open(path: Path):
    from PIL import Image
    path = expand_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file {path} not found")
    try:
        return Image.open(path)
    except Exception as e:  # noqa: BLE001 - PIL raises several types for unreadable files
        raise ValueError(f"cannot read {path} as an image ({e})") from e


def mask_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of a mask file, read from its header (no decoding), after checking its mode."""
    with _open(Path(path)) as im:
        _check_mode(im.mode, path)
        return im.size[1], im.size[0]


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header (no decoding)."""
    with _open(Path(path)) as im:
        return im.size[1], im.size[0]


def _check_mode(mode: str, path: str | Path) -> None:
    if mode not in _MASK_MODES:
        raise ValueError(f"mask {path} is a mode-{mode} image; masks must be 8-bit single-channel images (PIL mode L "
                         "or P) whose pixel values are class indices. Convert colour masks to class indices first "
                         "(map each colour to its index in codes).")


def check_mask_values(mask: torch.Tensor, n_codes: int, void_code: int | None, path: str | Path = "mask") -> None:
    """Raise if ``mask`` holds a value that is neither an index of the ``n_codes`` codes nor ``void_code``.

    >>> check_mask_values(torch.tensor([[0, 1], [1, 255]]), n_codes=2, void_code=255)     # fine: nothing happens
    >>> check_mask_values(torch.tensor([[0, 3]]), n_codes=2, void_code=None, path="m.png")
    Traceback (most recent call last):
    ValueError: mask m.png holds value(s) [3] outside the codes (2 codes: values 0..1); check that codes lists ...
    """
    values = torch.unique(mask)
    bad = values[values >= n_codes]
    if void_code is not None:
        bad = bad[bad != void_code]
    if bad.numel():
        allowed = f"0..{n_codes - 1}" + (f" or the void code {void_code}" if void_code is not None else "")
        head = f"mask {path} holds value(s) {bad.tolist()[:8]} outside the codes ({n_codes} codes: values {allowed})"
        if set(values.tolist()) <= {0, 255}:  # a 0/255 binary mask: 255 is the object, not pixels to ignore
            raise ValueError(f"{head}; it looks like a 0/255 binary mask, where 255 is the foreground: use "
                             "codes=['background', 'object'] and save the masks with their values divided by 255 "
                             "(0 and 1, e.g. Image.fromarray((np.array(m) // 255).astype('uint8'))). Do not pass "
                             "void_code=255: that would ignore every foreground pixel")
        raise ValueError(f"{head}; check that codes lists every class (one per mask value), or pass void_code= only "
                         "if that value marks pixels to ignore")


def load_mask(path: str | Path, n_codes: int | None = None, void_code: int | None = None,
              image_hw: tuple[int, int] | None = None, image_path: str | Path | None = None) -> torch.Tensor:
    """Decode a mask file as a ``uint8`` tensor ``[H, W]`` of class indices, checked against the codes.

    Args:
        path: the mask file (8-bit: PIL mode ``L``, ``P`` (palette indices are the classes) or ``1``).
        n_codes: the number of classes; values ``>= n_codes`` (other than ``void_code``) are an error.
        void_code: the ignore value, allowed even when ``>= n_codes``.
        image_hw: the ``(height, width)`` of the image this mask labels; a different size is an error.
        image_path: the image file, named in error messages.

    >>> import tempfile; from PIL import Image
    >>> f = Path(tempfile.mkdtemp()) / "mask.png"
    >>> Image.fromarray(np.array([[0, 1], [2, 255]], np.uint8)).save(f)
    >>> load_mask(f, n_codes=3, void_code=255)
    tensor([[  0,   1],
            [  2, 255]], dtype=torch.uint8)
    """
    path = expand_path(path)
    with _open(path) as im:
        _check_mode(im.mode, path)
        if im.mode == "1":
            im = im.convert("L").point(lambda v: 1 if v else 0)
        arr = np.array(im, dtype=np.uint8, copy=True)
    if image_hw is not None and tuple(arr.shape) != tuple(image_hw):
        raise ValueError(f"mask {path} is {arr.shape[1]}x{arr.shape[0]} (width x height) but its image "
                         f"{image_path or ''} is {image_hw[1]}x{image_hw[0]}; a mask must have its image's size")
    mask = torch.from_numpy(arr)
    if n_codes is not None:
        check_mask_values(mask, n_codes, void_code, path)
    return mask
