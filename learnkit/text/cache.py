"""Frozen-prefix caching: while the first stages of a model are frozen, compute their output once.

A *staged* model (`learnkit.text.transformer.TransformerClassifier`) has ``n_stages``,
``stage_modules()`` and ``run_stages(state, start, stop)``. When every stage before ``start`` is
frozen, the state at ``start`` for a given text never changes during training, so `ActivationCache`
computes it once per text (in eval mode: no dropout in the frozen part, as for a fixed feature
extractor) and the core `FrozenFeatureCache` (`learnkit.core.feature_cache`), with `StageStates` as its
source, trains the remaining stages on it: with the whole body frozen an epoch costs only the head, so many
head epochs cost less than one pass of the body. `text_classifier_learner` adds it (``cache_frozen=True``).

The cache is kept between fits, invalidated when the frozen weights change (a fingerprint of their values
is checked), and skipped, with a warning, when it would take more than ``max_cache_mb`` of memory.

>>> cache = FrozenFeatureCache(StageStates())
>>> cache.source.cache.entries
{}
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..core.data import DataLoaders
from ..core.feature_cache import FeatureSource, FrozenFeatureCache, NotCached
from ..core.sharding import DistributedDL
from .batching import TextDataset

__all__ = ["is_staged", "cache_start", "ActivationCache", "CachedStates", "CachedCollate", "StageStates",
           "FrozenFeatureCache"]


def is_staged(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("n_stages", "stage_modules", "run_stages"))


def cache_start(model: nn.Module) -> int:
    """The first stage with a trainable parameter: every stage before it can be cached (0: nothing to cache).

    >>> from learnkit.text import TransformerClassifier
    >>> import transformers
    >>> config = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...                                  intermediate_size=16)
    >>> model = TransformerClassifier(transformers.BertModel(config, add_pooling_layer=False), n_out=2)
    >>> before = cache_start(model)
    >>> _ = model.encoder.requires_grad_(False)            # freeze the body: stages 0-3 can be cached
    >>> before, cache_start(model)
    (0, 4)
    """
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

    >>> from learnkit.text import TextDataset, TransformerClassifier
    >>> import transformers
    >>> config = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...                                  intermediate_size=16)
    >>> model = TransformerClassifier(transformers.BertModel(config, add_pooling_layer=False), n_out=2)
    >>> ds = TextDataset(["good film", "bad"], [[2, 5, 6, 3], [2, 7, 3]], labels=[1, 0])
    >>> states = ActivationCache().compute(model, ds, stops=[3], device=torch.device("cpu"), pad_id=0)
    >>> [(tuple(s.shape), s.dtype) for s in states[3]]     # the input of stage 3 (pooling), per text
    [((4, 8), torch.float16), ((3, 8), torch.float16)]
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
        key = tuple(id(getattr(d, "raw", d)) for d in (dls.train, dls.valid))  # the loaders themselves
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


class CachedStates:
    """The cached states of a dataset's texts (one tensor each, in dataset order) and their labels: a batch is
    ``({"hidden", "mask", "stage"}, labels)`` (`CachedCollate`), what the staged model takes from ``stage`` on."""

    def __init__(self, states: Sequence[torch.Tensor], labels: Sequence[int], stage: int):
        self.states, self.labels, self.collate = states, labels, CachedCollate(stage)

    def batch(self, idx: torch.Tensor) -> tuple:
        return self.collate([(self.states[i], torch.tensor(self.labels[i])) for i in idx.tolist()])


class StageStates(FeatureSource):
    """`FeatureSource` of a staged text model: the states at its first trainable stage (`cache_start`), from
    an `ActivationCache` kept between fits. Reads the learner's ``cache_frozen`` (``False``: never cache),
    ``max_cache_mb`` (above it: no cache, a warning) and ``_cache_keep`` (earlier boundaries to fill in the
    same pass, which `TextLearner.fine_tune` asks for).

    >>> source = StageStates(max_mb=64)        # text_classifier_learner adds FrozenFeatureCache(StageStates())
    >>> cb = FrozenFeatureCache(source); type(cb.source).__name__, source.cache.max_mb
    ('StageStates', 64)
    """

    def __init__(self, max_mb: float = 2048):
        self.cache = ActivationCache(max_mb)

    def why_not(self, learn) -> str | None:
        if not getattr(learn, "cache_frozen", True):
            return "cache_frozen=False"
        if not is_staged(learn.model):
            return f"the model ({type(learn.model).__name__}) is not run in stages"
        if cache_start(learn.model) == 0:
            return "no frozen stage before the first trainable one"
        if getattr(learn.dls, "tokenizer", None) is None or learn.dls.train is None:
            return "the loaders are not TextDataLoaders with training texts"
        return None

    def features(self, learn, dl: DataLoader, shard: DistributedDL | None) -> CachedStates:
        """The states of ``dl.dataset``'s texts at the first trainable stage (both splits are filled at once;
        under DDP every rank computes them for the whole set)."""
        dls, model = learn.dls, learn.model
        start = cache_start(model)
        keep = [b for b in getattr(learn, "_cache_keep", ()) if 0 < b < start]
        self.cache.max_mb = getattr(learn, "max_cache_mb", self.cache.max_mb)
        if not self.cache._fill(model, dls, [start, *keep], learn.device, learn.autocast(), learn.show_progress):
            raise NotCached(f"the states would take more than max_cache_mb={self.cache.max_mb:g} MB")
        split = next((name for name, d in (("train", dls.train), ("valid", dls.valid))
                      if d is not None and d.dataset is dl.dataset), None)
        if split is None:
            raise NotCached("the loader's texts are neither the training nor the validation set")
        return CachedStates(self.cache.entries[start][split], dl.dataset.labels, start)
