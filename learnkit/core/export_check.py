"""The checks `load_learner` runs on an export's config before it allocates anything from it.

An export may come from a stranger, and its JSON config says how big to build things: a model whose
``n_out`` was edited to ``10**11`` would ask for 400 TB, a ``Resize`` of 200000 pixels would make ``predict``
ask for 180 GB. So, before any model or pipeline is built:

- the model's keyword arguments are checked against the builder's signature (unknown names, missing ones,
  wrong JSON types) and, for learnkit's own builders, every integer and list length against the largest size
  in the stored tensors (a size that no weight has cannot be right);
- the model is then built on PyTorch's ``meta`` device (shapes only, no memory), and its tensors' names and
  shapes must be exactly the stored ones, and its memory no more than the file's;
- the loss's arguments are checked against its signature;
- every image size in the pipeline's transforms is checked against ``LEARNKIT_MAX_IMAGE_PIXELS``.

Every failure is an `ExportError` naming the field (``model.kwargs['n_out']``, ``dls.config.item_tfms[0].size``).

>>> check_kwargs(lambda n_in, n_out: None, {"n_in": 2, "n_uot": 3}, "model.kwargs", "my.builder")
Traceback (most recent call last):
...
learnkit.core.safefile.ExportError: model.kwargs['n_uot'] is not an argument of my.builder (its arguments: n_in, n_out)
"""
from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .safefile import ExportError
from .validation import is_int, max_image_pixels

__all__ = ["tensor_shapes", "check_kwargs", "check_size_bounds", "build_model_checked", "check_dls_sizes"]

#: Memory a model built from a config may take beyond the stored tensors (buffers that are not saved).
_SLACK_BYTES = 64 << 20


def tensor_shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], int]]:
    """``{name: (shape, bytes)}`` of the stored weights: what the config's sizes are checked against.

    >>> tensor_shapes({"w": torch.zeros(2, 3)})
    {'w': ((2, 3), 24)}
    """
    return {k: (tuple(v.shape), v.numel() * v.element_size()) for k, v in state.items()}


# --- keyword arguments against a signature ----------------------------------------------------------------
def _hints(f: Callable) -> tuple[inspect.Signature | None, dict[str, Any]]:
    target = f.__init__ if isinstance(f, type) else f
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None, {}
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - annotations naming TYPE_CHECKING-only types: check names, not types
        hints = {}
    return sig, hints


def _type_ok(value: Any, ann: Any) -> bool:
    """Whether a JSON ``value`` fits the annotation ``ann`` (unknown annotations accept anything)."""
    if ann is Any or ann is inspect.Parameter.empty or isinstance(ann, (str, typing.TypeVar)):
        return True
    if ann is type(None) or ann is None:
        return value is None
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return is_int(value)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
        return not args or all(_type_ok(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping) or ann in (dict, Mapping):
        return isinstance(value, dict)
    if ann in (list, tuple):
        return isinstance(value, (list, tuple))
    return True


def _type_name(ann: Any) -> str:
    return (str(ann).replace("collections.abc.", "").replace("typing.", "") if not isinstance(ann, type)
            else ann.__name__)


def check_kwargs(f: Callable, kwargs: Mapping[str, Any], where: str, name: str) -> None:
    """Raise an `ExportError` when ``kwargs`` do not fit the signature of ``f``: an unknown or missing argument,
    or a value of the wrong JSON type (by the annotations). ``where`` names the config field in messages.

    >>> def builder(n_out: int, ps: float = 0.5): ...
    >>> check_kwargs(builder, {"n_out": 3}, "model.kwargs", "demo")
    >>> check_kwargs(builder, {"n_out": "3"}, "model.kwargs", "demo")
    Traceback (most recent call last):
    ...
    learnkit.core.safefile.ExportError: model.kwargs['n_out'] must be int, got '3' (str)
    """
    sig, hints = _hints(f)
    if sig is None:
        return
    params = {k: p for k, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
              and k != "self"}
    open_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    for k, v in kwargs.items():
        huge = [f for f, i in _ints(v, f"{where}[{k!r}]") if not -2**63 <= i < 2**63]
        if huge:
            raise ExportError(f"{huge[0]} is not a 64-bit integer: the config was edited or damaged")
        if k not in params:
            if open_kwargs:
                continue
            raise ExportError(f"{where}[{k!r}] is not an argument of {name} (its arguments: {', '.join(params)})")
        ann = hints.get(k, params[k].annotation)
        if not _type_ok(v, ann):
            shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
            raise ExportError(f"{where}[{k!r}] must be {_type_name(ann)}, got {shown} ({type(v).__name__})")
    missing = [k for k, p in params.items() if p.default is p.empty and p.kind != p.KEYWORD_ONLY and k not in kwargs]
    missing += [k for k, p in params.items() if p.default is p.empty and p.kind == p.KEYWORD_ONLY and k not in kwargs]
    if missing:
        raise ExportError(f"{where} lacks {missing[0]!r}, a required argument of {name}")


def _mentions_int(ann: Any) -> bool:
    if ann is int:
        return True
    return any(_mentions_int(a) for a in typing.get_args(ann))


def check_size_bounds(builder: Callable, kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[tuple[int, ...], int]],
                      where: str) -> None:
    """Every integer of an ``int`` argument of ``builder`` (also inside lists) must be in ``[0, bound]``, and every
    list at most ``bound`` long, where ``bound`` is the largest size of any stored tensor (or their number): the
    integers learnkit's model builders take are sizes, counts of layers and ids, and a size that no weight has
    cannot be right. (Values of other types, such as the user ids of a collaborative-filtering model, are only
    counted.)

    >>> def builder(n_out: int, layers: list[int] = (64,)): ...
    >>> check_size_bounds(builder, {"n_out": 10, "layers": [64]}, {"w": ((10, 64), 2560)}, "model.kwargs")
    >>> check_size_bounds(builder, {"n_out": 10**11}, {"w": ((10, 64), 2560)}, "model.kwargs")
    Traceback (most recent call last):
    ...
    learnkit.core.safefile.ExportError: model.kwargs['n_out'] is 100000000000, larger than any size in the file's weights (the largest is 64): the config was edited or damaged
    """
    bound = max([len(shapes)] + [d for shape, _ in shapes.values() for d in shape])
    _, hints = _hints(builder)

    def walk(v: Any, field: str, sizes: bool) -> None:
        if isinstance(v, bool) or v is None:
            return
        if is_int(v) and sizes:
            if v < 0:
                raise ExportError(f"{field} is {v}, a negative size or count: the config was edited or damaged")
            if v > bound:
                raise ExportError(f"{field} is {v}, larger than any size in the file's weights (the largest is "
                                  f"{bound}): the config was edited or damaged")
        elif isinstance(v, (list, tuple)):
            if len(v) > bound:
                raise ExportError(f"{field} holds {len(v)} values, more than any size in the file's weights (the "
                                  f"largest is {bound}): the config was edited or damaged")
            for i, x in enumerate(v):
                walk(x, f"{field}[{i}]", sizes)
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{field}[{k!r}]", sizes)

    for k, v in kwargs.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ExportError(f"{where}[{k!r}] is {v}, not a finite number: the config was edited or damaged")
        walk(v, f"{where}[{k!r}]", _mentions_int(hints.get(k, Any)))


# --- the model, built on the meta device first --------------------------------------------------------------
def _ints(v: Any, field: str) -> list[tuple[str, int]]:
    if is_int(v) and not isinstance(v, bool):
        return [(field, int(v))]
    if isinstance(v, (list, tuple)):
        return [x for i, o in enumerate(v) for x in _ints(o, f"{field}[{i}]")]
    if isinstance(v, dict):
        return [x for k, o in v.items() for x in _ints(o, f"{field}[{k!r}]")]
    return []


def build_model_checked(builder: Callable[..., nn.Module], kwargs: Mapping[str, Any],
                        shapes: Mapping[str, tuple[tuple[int, ...], int]], name: str, path: str | Path,
                        strict_meta: bool = True) -> nn.Module:
    """``builder(**kwargs)``, after building it on the ``meta`` device (no memory) and checking that its
    tensors are exactly the stored ones (names and shapes) and take no more memory than the file holds plus
    64 MB. Every failure is an `ExportError` that names the tensor and, where one explains it, the
    keyword argument. ``strict_meta=False`` (a user's builder) builds for real when the builder cannot run on the
    meta device.

    >>> shapes = {"weight": ((3, 2), 24), "bias": ((3,), 12)}
    >>> build_model_checked(nn.Linear, {"in_features": 2, "out_features": 3}, shapes, "linear", "m.safetensors")
    Linear(in_features=2, out_features=3, bias=True)
    >>> build_model_checked(nn.Linear, {"in_features": 2, "out_features": 30}, shapes, "linear", "m.safetensors")
    Traceback (most recent call last):
    ...
    learnkit.core.safefile.ExportError: m.safetensors: the weights do not fit the architecture linear(**{'in_features': 2, 'out_features': 30}): weight is [3, 2] in the file but [30, 2] from the config (model.kwargs['out_features'] = 30?)
    """
    try:
        with torch.device("meta"):
            meta = builder(**kwargs)
    except Exception as e:  # noqa: BLE001 - a builder given bad arguments can raise anything
        if strict_meta:
            raise ExportError(f"{path}: the model builder {name!r} could not build the model from the config's kwargs "
                              f"({type(e).__name__}: {e}); the file is damaged or from another version") from None
        meta = None
    if meta is not None and shapes:
        if not isinstance(meta, nn.Module):
            raise ExportError(f"{path}: the model builder {name!r} returned a {type(meta).__name__}, not an nn.Module")
        shown = repr(dict(kwargs))
        arch = f"{name}(**{shown if len(shown) <= 200 else shown[:197] + '...'})"
        state = meta.state_dict()
        missing, extra = sorted(set(state) - set(shapes)), sorted(set(shapes) - set(state))
        if missing or extra:
            raise ExportError(f"{path}: the weights do not fit the architecture {arch}: "
                              + (f"the file lacks {missing[:3]}" if missing else "")
                              + ("; " if missing and extra else "")
                              + (f"the model has no {extra[:3]}" if extra else ""))
        fields = _ints(dict(kwargs), "model.kwargs")
        for key, t in state.items():
            if tuple(t.shape) != shapes[key][0]:
                want, got = list(shapes[key][0]), list(t.shape)
                culprits = [f"{f} = {v}" for f, v in fields if v in got and v not in want]
                hint = f" ({', '.join(culprits[:2])}?)" if culprits else ""
                raise ExportError(f"{path}: the weights do not fit the architecture {arch}: {key} is {want} in the "
                                  f"file but {got} from the config{hint}")
        need = sum(t.numel() * t.element_size() for t in [*meta.parameters(), *meta.buffers()])
        have = sum(b for _, b in shapes.values())
        if need > 2 * have + _SLACK_BYTES:
            raise ExportError(f"{path}: the architecture {arch} would take {need:,} bytes, far more than the "
                              f"{have:,} bytes of stored weights: the config was edited or damaged")
    try:
        return builder(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{path}: the model builder {name!r} could not build the model from the config's kwargs "
                          f"({type(e).__name__}: {e}); the file is damaged or from another version") from None


# --- image sizes in the pipeline ---------------------------------------------------------------------------
def check_dls_sizes(config: Any, where: str = "dls.config") -> None:
    """Every transform (a config dict with a ``type``) that has a ``size`` must give positive integer sides
    whose product, times the validation zoom of a ``RandomResizedCrop`` (``1 + val_xtra`` per side), is at
    most ``LEARNKIT_MAX_IMAGE_PIXELS``: ``predict`` allocates images of that size.

    >>> check_dls_sizes({"item_tfms": [{"type": "Resize", "size": [224, 224]}]})
    >>> check_dls_sizes({"item_tfms": [{"type": "Resize", "size": [200000, 200000]}]})
    Traceback (most recent call last):
    ...
    learnkit.core.safefile.ExportError: dls.config['item_tfms'][0]['size'] is [200000, 200000]: 40,000,000,000 pixels, more than the limit of 89,478,485 (LEARNKIT_MAX_IMAGE_PIXELS); the config was edited or damaged, or raise the limit if you trust the file
    """
    limit = max_image_pixels()
    if isinstance(config, dict) and "bs" in config and not (is_int(config["bs"]) and 1 <= config["bs"] <= 1 << 20):
        raise ExportError(f"{where}['bs'] must be a batch size (an integer from 1 to {1 << 20}), got {config['bs']!r}")

    def walk(node: Any, field: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and "size" in node and node["size"] is not None:
                size, f = node["size"], f"{field}['size']"
                sides = [size, size] if is_int(size) else size
                if not (isinstance(sides, (list, tuple)) and len(sides) == 2 and all(is_int(s) and s >= 1 for s in sides)):
                    raise ExportError(f"{f} must be a positive int or two of them (height, width), got {size!r}")
                zoom = node.get("val_xtra", 0)
                if not (isinstance(zoom, (int, float)) and not isinstance(zoom, bool) and 0 <= zoom <= 10):
                    raise ExportError(f"{field}['val_xtra'] must be a number in [0, 10], got {zoom!r}")
                pixels = math.prod(sides) * (1 + zoom) ** 2
                if limit is not None and pixels > limit:
                    raise ExportError(f"{f} is {size!r}: {int(pixels):,} pixels, more than the limit of {limit:,} "
                                      "(LEARNKIT_MAX_IMAGE_PIXELS); the config was edited or damaged, or raise the "
                                      "limit if you trust the file")
            for k, v in node.items():
                walk(v, f"{field}[{k!r}]")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{field}[{i}]")

    walk(config, where)
