"""The lazy dataset under `DataBlock`: items are cheap references; each is turned into tensors on access.

`BlockDataset[i]` runs, for item ``i`` only and inside the DataLoader worker that asks for it: the getters
(``get_x``/``get_y``), each block's ``encode`` (decode an image, look up a class) and the item transforms.
Nothing is read before the first batch. A step that fails raises a `DataBlockError` naming the step and the
item, or with ``on_error='skip'`` the item is dropped from its batch by `collate_skipping` and recorded in a
`SkipLog` (a small file the workers append to, so the main process sees what they skipped).

Random item transforms draw from the global torch RNG seeded per item: `ItemSampler` hands out
``(index, seed)`` pairs drawn from its own generator, so a batch is the same with any number of workers.

>>> import torch
>>> ds = BlockDataset(list(range(4)), [lambda o: o, lambda o: o % 2], [_Identity(), _Identity()])
>>> ds[3]
(3, 1)
>>> from learnkit.core.blockloader import collate_skipping
>>> collate_skipping([ds[0], None, ds[1]])
(tensor([0, 1]), tensor([0, 1]))
"""
from __future__ import annotations

import copy

import json
import os
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Sampler

__all__ = ["DataBlockError", "BlockDataset", "ItemSampler", "SkipLog", "item_name", "fixed_prefix"]


class DataBlockError(ValueError):
    """A step of the data pipeline failed on an item; the message names the step, the item and the cause."""


def item_name(o: Any, limit: int = 160) -> str:
    """A short, readable name for an item in error messages (a path, a data-frame row, a value)."""
    if isinstance(o, (str, Path)):
        return str(o)
    if hasattr(o, "to_dict") and hasattr(o, "name"):  # a pandas row
        s = f"row {o.name} {o.to_dict()}"
    else:
        s = repr(o)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def fixed_prefix(tfms: Sequence[Any], training: bool) -> int:
    """How many leading item transforms give the same output on every call: those with ``random=False``, and in
    validation (``training=False``) every transform that declares ``random`` (it then runs its fixed version).
    Plain callables count as random."""
    for i, t in enumerate(tfms):
        if not hasattr(t, "random") or (training and t.random):
            return i
    return len(tfms)


class SkipLog:
    """Items left out by ``on_error='skip'``: ``(name, reason)`` lines appended to a temporary file by whichever
    process met them (the main process or a loader worker); `read` lists them without repeats. Each skip also
    warns, naming the item."""

    def __init__(self, path: str | None = None):
        if path is None:
            fd, path = tempfile.mkstemp(prefix="learnkit-skipped-", suffix=".jsonl")
            os.close(fd)
            weakref.finalize(self, _unlink, path)
        self.path = path

    def add(self, name: str, reason: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps([name, reason]) + "\n")
        warnings.warn(f"skipped {name}: {reason} (on_error='skip'; the full list is in dls.skipped)", stacklevel=2)

    def read(self) -> list[tuple[str, str]]:
        try:
            lines = Path(self.path).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        seen: dict[str, str] = {}
        for line in lines:
            try:
                name, reason = json.loads(line)
            except ValueError:  # a line being written right now
                continue
            seen.setdefault(name, reason)
        return list(seen.items())


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class BlockDataset(torch.utils.data.Dataset):
    """``(*inputs, *targets)`` for the items ``items[idxs[i]]``, built lazily (see the module docstring).

    Args:
        items: the item references (paths, data-frame rows, values), indexable.
        getters: one function per block, item → raw value (``None``: the item itself).
        blocks: one block per value: ``encode(raw) -> tensor``; the first with ``apply_item_tfms`` gets the
            item transforms, together with the value of a block with ``is_mask`` (a segmentation mask moves
            with its image) and of one with ``is_points`` (key points move with it too).
        item_tfms: item transforms, applied with ``training``.
        idxs: which items this split holds (default all).
        on_error: ``'raise'`` or ``'skip'`` (then failed items are ``None``, and recorded in ``skip_log``).
        cache: an optional presized cache of the deterministic part (see `learnkit.core.cache`).
    """

    def __init__(self, items: Sequence[Any], getters: Sequence[Callable | None], blocks: Sequence[Any],
                 item_tfms: Sequence[Any] = (), idxs: Sequence[int] | None = None, training: bool = False,
                 on_error: str = "raise", skip_log: SkipLog | None = None, step_names: Sequence[str] | None = None,
                 cache: Any = None):
        if len(getters) != len(blocks):
            raise ValueError(f"got {len(getters)} getters for {len(blocks)} blocks")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.all_items, self.getters, self.blocks = items, list(getters), list(blocks)
        self.idxs = list(range(len(items))) if idxs is None else list(idxs)
        self.item_tfms, self.training, self.on_error = list(item_tfms), training, on_error
        self.skip_log = skip_log if skip_log is not None else (SkipLog() if on_error == "skip" else None)
        self.step_names = list(step_names) if step_names else [f"getter {k}" for k in range(len(blocks))]
        self.n_fixed = fixed_prefix(self.item_tfms, training)
        self.tfm_block = next((k for k, b in enumerate(self.blocks) if hasattr(b, "apply_item_tfms")), None)
        self.mask_block = next((k for k, b in enumerate(self.blocks) if getattr(b, "is_mask", False)), None)
        #: key points (``[N, 2]`` pixel coordinates) that move with the transformed value
        self.points_block = next((k for k, b in enumerate(self.blocks) if getattr(b, "is_points", False)), None)
        #: the values the presized cache holds: the transformed one, and the mask that moves with it
        self.cached_blocks = [k for k in (self.tfm_block, self.mask_block) if k is not None]
        self.cache = cache

    def __len__(self) -> int:
        return len(self.idxs)

    @property
    def deterministic(self) -> bool:
        """Whether ``self[i]`` is the same on every access (no random item transforms)."""
        return self.n_fixed == len(self.item_tfms)

    def fixed(self) -> "BlockDataset":
        """This split's items with the validation-time version of every item transform (no randomness): the
        un-augmented training images `HeadFit` computes body features of. ``self`` when it is already fixed."""
        if self.deterministic or not self.training:
            return self
        out = copy.copy(self)
        out.training, out.n_fixed = False, fixed_prefix(self.item_tfms, False)
        out.cache = None  # the presized cache holds the training-time prefix, which may be shorter
        return out

    @property
    def items(self) -> list[Any]:
        """This split's items (references: paths, rows), in order."""
        return [self.all_items[i] for i in self.idxs]

    def item(self, i: int) -> Any:
        return self.all_items[self.idxs[i]]

    def item_name(self, i: int) -> str:
        return item_name(self.item(i))

    def _tfm(self, values: list, tfms: Sequence[Any], original: bool) -> list:
        """Run ``tfms`` on the transformed value, with a mask and/or points; ``original``: the values are the
        decoded ones (a mask and points are then checked against their image)."""
        k, m, p = self.tfm_block, self.mask_block, self.points_block
        if k is None or not (tfms or (original and (m is not None or p is not None))):
            return values
        if p is None:  # blocks that know nothing of points keep their signature
            out = self.blocks[k].apply_item_tfms(tfms, values[k], self.training, mask=None if m is None else values[m])
        else:
            out = self.blocks[k].apply_item_tfms(tfms, values[k], self.training, mask=None if m is None else values[m],
                                                 points=values[p], original=original)
        if m is None and p is None:
            values[k] = out
            return values
        out = list(out)
        for j in (k, m, p):
            if j is not None:
                values[j] = out.pop(0)
        return values

    def pack(self, values: Sequence[Any]) -> torch.Tensor:
        """The cached values of an item as one ``uint8 [C, H, W]`` tensor (an image, and its mask as a channel)."""
        parts = [values[k] if values[k].ndim == 3 else values[k][None] for k in self.cached_blocks]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _unpack(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        if len(self.cached_blocks) == 1:
            return {self.cached_blocks[0]: x}
        return {self.tfm_block: x[:-1], self.mask_block: x[-1]}

    def walk(self, i: int, seed: int | None = None, report: Callable[[str, Any], None] | None = None,
             cache_fill: bool = True) -> tuple:
        """Build item ``i`` step by step, calling ``report(step, value)`` after each (for `DataBlock.summary`).
        Raises `DataBlockError` naming the step that failed."""
        step, raws = "reading the item", []
        try:
            o = self.item(i)
            cache = self.cache if cache_fill else None
            cached = cache.get(i) if cache is not None else None
            cached = self._unpack(cached) if cached is not None else {}
            values = []
            for k, (g, b, name) in enumerate(zip(self.getters, self.blocks, self.step_names)):
                if k in cached:
                    values.append(cached[k])
                    continue
                step = name
                v = g(o) if g is not None else o
                raws.append(v)
                if report:
                    report(step, v)
                step = f"{type(b).__name__}.encode"
                values.append(b.encode(v))
                if report:
                    report(step, values[-1])
            if not cached:
                step = "item_tfms"
                values = self._tfm(values, self.item_tfms[: self.n_fixed], original=True)
                if cache is not None:
                    cache.put(i, self.pack(values))
            rest = self.item_tfms[self.n_fixed:]
            if rest:
                step = "item_tfms (random)"
                if seed is None:
                    values = self._tfm(values, rest, original=False)
                else:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed)
                        values = self._tfm(values, rest, original=False)
            if report and self.item_tfms:
                report("item_tfms", values[self.tfm_block] if self.tfm_block is not None else values)
            return tuple(values)
        except OSError as e:  # a file that cannot be read: keep its type (ImageLoadError...), name the step
            msg = f"{step} failed on item {self._name_with(i, raws)}: {e}"
            try:
                err = type(e)(msg)
            except Exception:  # noqa: BLE001 - an OSError subclass with another constructor
                err = DataBlockError(msg)
            raise err from e
        except DataBlockError:
            raise
        except Exception as e:  # noqa: BLE001 - user functions can raise anything; we name the item and step
            raise DataBlockError(f"{step} failed on item {self._name_with(i, raws)}: {type(e).__name__}: {e}") from e

    def _name_with(self, i: int, raws: Sequence[Any]) -> str:
        """The item's name, and the other files its getters gave (a mask file): both are named in errors."""
        name = self.item_name(i)
        files = [str(v) for v in raws if isinstance(v, (str, Path)) and str(v) != name]
        return f"{name} (with {', '.join(files)})" if files else name

    def __getitem__(self, key: int | tuple[int, int]) -> tuple | None:
        i, seed = key if isinstance(key, tuple) else (key, None)
        if self.on_error == "raise":
            return self.walk(i, seed)
        try:
            return self.walk(i, seed)
        except Exception as e:  # noqa: BLE001 - recorded and reported, see SkipLog
            self.skip_log.add(self.item_name(i), str(e))
            return None


class ItemSampler(Sampler):
    """Indices in a fresh order per epoch (``shuffle``), each with a per-item seed for random item transforms
    (``with_seeds``), both from this sampler's own generator: independent of the number of workers."""

    def __init__(self, n: int, shuffle: bool = True, seed: int | None = 42, with_seeds: bool = False):
        self.n, self.shuffle, self.with_seeds = n, shuffle, with_seeds
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**62))

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator:
        order = torch.randperm(self.n, generator=self.generator).tolist() if self.shuffle else range(self.n)
        if not self.with_seeds:
            yield from order
            return
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.generator).tolist()
        for k, i in enumerate(order):
            yield (i, seeds[k])


class _Identity:
    """A block that leaves values as they are (for the doctest)."""

    def encode(self, v: Any) -> Any:
        return v
