"""One safetensors file holding named tensors and a JSON header: what exports and checkpoints are made of.

`save_tree` writes a nested structure of tensors, numbers and strings (`pack_tree`: tensors become named
entries, the rest a JSON skeleton) with a JSON header under the metadata key ``"learnkit"``; `load_tree`
reads it back, with clear errors for foreign or damaged files. No pickle anywhere.

>>> import tempfile, os
>>> path = save_tree(os.path.join(tempfile.mkdtemp(), "t.safetensors"), {"w": torch.ones(2)}, {"format": "demo"})
>>> header, tree = load_tree(path)
>>> header["format"], tree["w"].tolist()
('demo', [1.0, 1.0])
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .checkpoint import atomic_write

__all__ = ["ExportError", "pack_tree", "unpack_tree", "save_tree", "load_tree"]

_META_KEY = "learnkit"


class ExportError(ValueError):
    """The file is not a learnkit export, is damaged, or cannot be rebuilt by this learnkit."""


# --- a JSON skeleton + named tensors: nested dicts/lists/tuples of tensors, numbers and strings ----------
def pack_tree(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split ``tree`` into a JSON-able skeleton and a flat ``{name: tensor}`` dict for safetensors.

    Tensors become ``{"@t": name}`` (views of one tensor are stored once), tuples ``{"@tuple": [...]}``,
    dicts with non-string keys ``{"@items": [[k, v], ...]}``, numpy arrays ``{"@np": name}``.

    >>> skel, ts = pack_tree({"w": torch.ones(2), "step": (3, None)})
    >>> skel
    {'w': {'@t': 'w'}, 'step': {'@tuple': [3, None]}}
    >>> torch.equal(unpack_tree(skel, ts)["w"], torch.ones(2))
    True
    """
    tensors: dict[str, torch.Tensor] = {}
    views: dict[tuple, str] = {}
    storages: set[int] = set()

    def tensor(t: torch.Tensor, name: str) -> str:
        t = t.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype,
               str(t.device))
        if t.numel() and key in views:  # the same view again (tied weights): store it once
            return views[key]
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages or not t.is_contiguous():  # safetensors refuses tensors that share memory
            t = t.clone(memory_format=torch.contiguous_format)
        else:
            storages.add(ptr)
        base, n = name, 1
        while name in tensors:  # a key holding "/" could repeat another path
            name, n = f"{base}#{n}", n + 1
        tensors[name] = t.cpu()
        views[key] = name
        return name

    def walk(o: Any, path: str) -> Any:
        if isinstance(o, torch.Tensor):
            return {"@t": tensor(o, path or "tensor")}
        if isinstance(o, np.ndarray):
            return {"@np": tensor(torch.from_numpy(np.ascontiguousarray(o)), path or "array")}
        if isinstance(o, np.generic):
            return o.item()
        if o is None or isinstance(o, (bool, int, str)):
            return o
        if isinstance(o, float):
            return o if math.isfinite(o) else {"@float": repr(o)}
        if isinstance(o, tuple):
            return {"@tuple": [walk(v, f"{path}/{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(o)]
        if isinstance(o, dict):
            if all(isinstance(k, str) and not k.startswith("@") for k in o):
                return {k: walk(v, f"{path}/{k}" if path else k) for k, v in o.items()}
            return {"@items": [[walk(k, f"{path}/key{i}"), walk(v, f"{path}/{k}")] for i, (k, v) in enumerate(o.items())]}
        raise TypeError(f"cannot store a {type(o).__name__} at {path or 'the top level'!r}: only tensors, numpy "
                        "arrays, numbers, strings, None and lists/tuples/dicts of them are saved (never pickle)")

    return walk(tree, prefix), tensors


def unpack_tree(skel: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `pack_tree`."""
    if isinstance(skel, list):
        return [unpack_tree(v, tensors) for v in skel]
    if not isinstance(skel, dict):
        return skel
    if "@t" in skel or "@np" in skel:
        name = skel.get("@t", skel.get("@np"))
        if name not in tensors:
            raise ExportError(f"the file names a tensor {name!r} that it does not hold: it is damaged")
        return tensors[name] if "@t" in skel else tensors[name].numpy()
    if "@float" in skel:
        return float(skel["@float"])
    if "@tuple" in skel:
        return tuple(unpack_tree(v, tensors) for v in skel["@tuple"])
    if "@items" in skel:
        return {unpack_tree(k, tensors): unpack_tree(v, tensors) for k, v in skel["@items"]}
    return {k: unpack_tree(v, tensors) for k, v in skel.items()}


def save_tree(path: str | Path, tree: Any, header: dict[str, Any]) -> Path:
    """Write ``tree`` (see `pack_tree`) and a JSON ``header`` to one safetensors file, atomically."""
    skel, tensors = pack_tree(tree)
    meta = {_META_KEY: json.dumps({**header, "tree": skel})}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_tree(path: str | Path, what: str = "file", device: str | torch.device = "cpu") -> tuple[dict[str, Any], Any]:
    """Read a file written by `save_tree`: ``(header, tree)``, with clear errors for foreign or damaged files."""
    header = _read_header(path, what)
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise ExportError(f"{path} is damaged and cannot be read ({e})") from None
    try:
        return header, unpack_tree(header.pop("tree", None), tensors)
    except (TypeError, ValueError, KeyError, RecursionError) as e:
        raise ExportError(f"{path}: the structure described in the file is damaged ({e})") from None


def _sniff(path: Path) -> str:
    head = path.open("rb").read(8)
    if head[:2] == b"PK":
        return " It is a zip archive (torch.save or a fastai export.pkl?): learnkit never unpickles files."
    if head[:1] == b"\x80":
        return " It looks like a Python pickle (fastai export.pkl?): learnkit never unpickles files."
    return ""


def _read_header(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no learnkit {what} at {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; pass the file itself (e.g. {path / 'export.safetensors'})")
    if not os.access(path, os.R_OK):
        mode = stat.filemode(path.stat().st_mode)
        raise PermissionError(f"{path} exists but this user cannot read it (permissions {mode}); "
                              f"run `chmod a+r {path}` or load it as its owner")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except SafetensorError as e:
        if "not fully covered" in str(e):
            raise ExportError(f"{path} is truncated or damaged ({e}); export or save it again") from None
        raise ExportError(f"{path} is not a learnkit {what}: it is not a safetensors file ({e}).{_sniff(path)}") from None
    if _META_KEY not in meta:
        raise ExportError(f"{path} is a safetensors file but not a learnkit {what} (no {_META_KEY!r} metadata); "
                          "plain weights load with learn.model.load_state_dict(safetensors.torch.load_file(path))")
    try:
        header = json.loads(meta[_META_KEY])
    except (json.JSONDecodeError, RecursionError) as e:
        raise ExportError(f"{path}: the learnkit config in the file is not valid JSON ({e}); the file is damaged") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path}: the learnkit config must be a JSON object, got {type(header).__name__}")
    return header
