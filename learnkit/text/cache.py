"""Frozen-prefix caching: while the first stages of a model are frozen, compute their output once.

A *staged* model (`learnkit.text.transformer.TransformerClassifier`) has ``n_stages``,
``stage_modules()`` and ``run_stages(state, start, stop)``. When every stage before ``start`` is
frozen, the state at ``start`` for a given text never changes during training, so `ActivationCache`
computes it once per text (in eval mode: no dropout in the frozen part, as for a fixed feature
extractor) and `learnkit.text.learner.TextLearner` trains the remaining stages on it: with the whole body
frozen an epoch costs only the head, so many head epochs cost less than one pass of the body.

The cache is invalidated when the frozen weights change (a fingerprint of their values is checked), and
is skipped, with a warning, when it would take more than ``max_mb`` of memory.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..core.data import DataLoaders
from .batching import BucketBatchSampler, TextDataset

__all__ = ["is_staged", "cache_start", "ActivationCache", "CachedDataset", "CachedCollate"]


def is_staged(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("n_stages", "stage_modules", "run_stages"))


def cache_start(model: nn.Module) -> int:
    """The first stage with a trainable parameter: every stage before it can be cached (0: nothing to cache)."""
    if not is_staged(model):
        return 0
    for i, m in enumerate(model.stage_modules()):
        if m is not None and any(p.requires_grad for p in m.parameters()):
            return i
    return 0  # nothing trainable: leave it to the normal loop


def _fingerprint(model: nn.Module, start: int) -> torch.Tensor:
    ps = [p for m in model.stage_modules()[:start] if m is not None for p in m.parameters()]
    if not ps:
        return torch.zeros(0, dtype=torch.float64)
    return torch.stack([p.detach().double().sum() for p in ps] + [p.detach().double().abs().sum() for p in ps]).cpu()


class CachedDataset(Dataset):
    """Cached states (one tensor per text: ``[L, D]`` token states or a ``[D]`` vector), their labels, and
    the token lengths of their texts (so that length bucketing makes the same batches as on the texts)."""

    def __init__(self, states: Sequence[torch.Tensor], labels: Sequence[int], lengths: Sequence[int]):
        self.states, self.labels, self.lengths = list(states), list(labels), list(lengths)

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.states[i], torch.tensor(self.labels[i])


class CachedCollate:
    """``({"hidden", "mask", "stage"}, labels)``: token states padded per batch, or vectors stacked."""

    def __init__(self, stage: int):
        self.stage = stage

    def __call__(self, items):
        states, ys = [it[0] for it in items], torch.stack([it[1] for it in items])
        if states[0].ndim == 1:
            return {"hidden": torch.stack(states).float(), "stage": self.stage}, ys
        n = max(s.shape[0] for s in states)
        hidden = torch.zeros(len(states), n, states[0].shape[1])
        mask = torch.zeros(len(states), n, dtype=torch.bool)
        for r, s in enumerate(states):
            hidden[r, : s.shape[0]] = s.float()
            mask[r, : s.shape[0]] = True
        return {"hidden": hidden, "mask": mask, "stage": self.stage}, ys


class ActivationCache:
    """The states of a model's frozen prefix for the texts of a `TextDataLoaders`, kept between fits.

    States are kept per *boundary* (the stage they feed). One pass can fill several boundaries
    (``keep``): `TextLearner.fine_tune` asks for the head's input and, at the same time, for the input of
    the first layer it unfreezes next. A boundary is reused while the weights before it are unchanged,
    and a later boundary is computed from an earlier cached one rather than from the token ids.
    """

    def __init__(self, max_mb: float = 2048, bs: int = 64):
        self.max_mb, self.bs = max_mb, bs
        self.key: tuple | None = None
        self.entries: dict[int, dict[str, list[torch.Tensor]]] = {}
        self.fps: dict[int, torch.Tensor] = {}

    def clear(self) -> None:
        self.key, self.entries, self.fps = None, {}, {}

    def _valid(self, model: nn.Module, b: int) -> bool:
        return b in self.entries and torch.equal(self.fps[b], _fingerprint(model, b))

    @torch.no_grad()
    def compute(self, model: nn.Module, ds: TextDataset, stops: Sequence[int], device: torch.device, pad_id: int,
                autocast=None, progress: bool = False, origin: int = 0,
                origin_states: Sequence[torch.Tensor] | None = None) -> dict[int, list[torch.Tensor]] | None:
        """The state of every text of ``ds`` at each boundary in ``stops``, in one pass (longest texts first,
        in batches of ``bs``), starting from the token ids or from ``origin_states`` at boundary ``origin``.
        ``None`` when the states would exceed ``max_mb``."""
        from ..core.callbacks.progress import progress_bar as tqdm
        stops = sorted(set(stops))
        lengths = ds.lengths
        order = sorted(range(len(ds)), key=lambda i: -lengths[i])
        out: dict[int, list] = {b: [None] * len(ds) for b in stops}
        collate = CachedCollate(origin)
        was_training = model.training
        model.eval()
        try:
            for k in tqdm(range(0, len(order), self.bs), desc=f"caching frozen stages {origin}-{stops[-1] - 1}",
                          disable=not progress, leave=False):
                idx = order[k: k + self.bs]
                if origin_states is None:
                    ids = torch.full((len(idx), max(1, lengths[idx[0]])), pad_id, dtype=torch.long)
                    for r, i in enumerate(idx):
                        ids[r, : lengths[i]] = torch.tensor(ds.ids[i], dtype=torch.long)
                    state = {"ids": ids.to(device)}
                else:
                    state = collate([(origin_states[i], torch.tensor(0)) for i in idx])[0]
                    state = {key: v.to(device) if isinstance(v, torch.Tensor) else v for key, v in state.items()}
                at = origin
                for b in stops:
                    with autocast if autocast is not None else contextlib.nullcontext():
                        state = model.run_stages(state, at, b)
                    at = b
                    hidden, mask = state["hidden"].float(), state.get("mask")
                    if k == 0 and not self._fits(hidden, mask, lengths):
                        return None
                    for r, i in enumerate(idx):
                        out[b][i] = (hidden[r, : int(mask[r].sum())].half() if mask is not None else hidden[r]).cpu()
        finally:
            model.train(was_training)
        return out

    def _fits(self, hidden: torch.Tensor, mask: torch.Tensor | None, lengths: Sequence[int]) -> bool:
        per = hidden.shape[-1] * (2 if mask is not None else 4)
        mb = per * (sum(lengths) if mask is not None else len(lengths)) / 2**20
        if mb > self.max_mb:
            warnings.warn(f"not caching the frozen stages: their output would take {mb:.0f} MB (max_cache_mb="
                          f"{self.max_mb:.0f}); training runs the whole model instead", stacklevel=5)
            return False
        return True

    def _fill(self, model: nn.Module, dls: DataLoaders, needed: Sequence[int], device: torch.device, autocast,
              progress: bool) -> bool:
        """Make the boundaries in ``needed`` valid; keep only those. False if they do not fit in memory."""
        key = (id(dls.train), id(dls.valid))
        if self.key != key:
            self.clear()
            self.key = key
        todo = sorted(b for b in set(needed) if not self._valid(model, b))
        if todo:
            # start from the latest valid boundary before the first one to compute, else from the ids
            origins = [b for b in self.entries if b < todo[0] and self._valid(model, b)]
            origin = max(origins, default=0)
            new: dict[int, dict[str, list]] = {b: {} for b in todo}
            for name, dl in (("train", dls.train), ("valid", dls.valid)):
                if dl is None:
                    continue
                res = self.compute(model, dl.dataset, todo, device, dls.tokenizer.pad_id, autocast, progress,
                                   origin=origin, origin_states=self.entries[origin][name] if origin else None)
                if res is None:
                    return False
                for b in todo:
                    new[b][name] = res[b]
            for b in todo:
                self.entries[b], self.fps[b] = new[b], _fingerprint(model, b)
        for b in [b for b in self.entries if b not in set(needed)]:
            del self.entries[b], self.fps[b]
        return True

    def dataloaders(self, model: nn.Module, dls: DataLoaders, start: int, device: torch.device,
                    autocast=None, progress: bool = False, keep: Sequence[int] = ()) -> DataLoaders | None:
        """Loaders of the cached states at ``start`` for ``dls`` (computed now unless still valid), or ``None``
        when too big. ``keep``: earlier boundaries to fill in the same pass and keep for a later fit."""
        if not self._fill(model, dls, [start, *[b for b in keep if 0 < b < start]], device, autocast, progress):
            return None
        states = self.entries[start]
        collate = CachedCollate(start)
        train_ds = CachedDataset(states["train"], dls.train.dataset.labels, dls.train.dataset.lengths)
        sampler = BucketBatchSampler(train_ds.lengths, dls.bs, shuffle=True)
        orig_sampler = getattr(dls.train, "batch_sampler", None)
        if isinstance(orig_sampler, BucketBatchSampler):  # continue the same random sequence of epochs
            sampler.generator = orig_sampler.generator
        train = DataLoader(train_ds, batch_sampler=sampler, collate_fn=collate)
        valid = None
        if dls.valid is not None:
            vds = CachedDataset(states["valid"], dls.valid.dataset.labels, dls.valid.dataset.lengths)
            valid = DataLoader(vds, batch_size=dls.valid.batch_size, shuffle=False, collate_fn=collate)
        cached = DataLoaders(train, valid, device=device, n_inp=1, vocab=dls.vocab)
        cached.loss_func = getattr(dls, "loss_func", None)
        return cached
