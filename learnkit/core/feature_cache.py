"""`FrozenFeatureCache`: while the first part of a model is frozen, compute its output once per item and train
the rest of the model on it.

With the first part frozen (no gradients, no randomness in it, no random transform of the inputs), its
output for an item is the same number every epoch; computing it once turns every later epoch into the cost
of the trainable part alone (the head of a frozen vision body: many head epochs for the price of one pass of
the body). The callback is the same for every task; a `FeatureSource` says how its model's frozen part is
run and when that is allowed (`learnkit.vision.feature_cache.BodyFeatures`: pooled image features;
`learnkit.text.cache.StageStates`: the states of a staged transformer at its first trainable stage).

At each phase of a fit the callback replaces ``learn.dl`` by a `CachedLoader`: batches of cached features
and targets, drawn with the phase loader's own batch sampler (and generator), so they come in the very
order the original loader would have produced them — the same training, up to floating-point rounding.
``learn.dls`` is untouched. Under DDP the phase loader is this rank's `DistributedDL` shard: the cached
loader serves exactly the shard's items and the shard keeps gathering validation results.

It steps aside (``active`` false, the reason in ``reason``) when a callback changes the inputs batch by batch
(``changes_inputs``: `MixUp`, `CutMix` would mix cached features instead of images), when a phase loader is
not a batched torch ``DataLoader``, or when the source says so.

>>> from torch.utils.data import TensorDataset
>>> dl = DataLoader(TensorDataset(torch.arange(6.)), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
>>> cached = CachedLoader(dl, TensorFeatures(torch.arange(6.) * 10, (torch.arange(6),)))
>>> [len(b[0]) for b in cached], all(bool((f == 10 * y).all()) for f, y in cached)
([4, 2], True)
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch.utils.data import DataLoader, IterableDataset

from .callback import Callback
from .headfit import HeadFit, fit_output_layer, init_output_bias
from .sharding import DistributedDL

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = ["FrozenFeatureCache", "FeatureSource", "FeatureStore", "TensorFeatures", "CachedLoader", "NotCached"]


class NotCached(Exception):
    """Raised by `FeatureSource.features` when the features cannot be cached after all (the message says why)."""


class FeatureStore(Protocol):
    """The cached features of every item of a dataset (in dataset order) and their targets."""

    def batch(self, idx: torch.Tensor) -> tuple:
        """The batch of items ``idx``: ``(features, *targets)``, as the model and the loss take them."""
        ...


class TensorFeatures:
    """Features and targets as row tensors: a batch is one index per tensor (no per-item Python)."""

    def __init__(self, feats: torch.Tensor, targets: tuple[torch.Tensor, ...]):
        self.feats, self.targets = feats, targets

    def __len__(self) -> int:
        return len(self.feats)

    def batch(self, idx: torch.Tensor) -> tuple:
        idx = idx.to(self.feats.device)
        return (self.feats[idx], *(t[idx.to(t.device)] for t in self.targets))


class _Positions:
    """``range(n)`` for a batch sampler whose items may carry a per-item seed: a `DataBlock` with random item
    transforms samples ``(index, seed)`` pairs (`ItemSampler`); the cached features need the index only.

    >>> ds = _Positions(3)
    >>> len(ds), ds[2], ds[(1, 12345)]
    (3, 2, 1)
    """

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> int:
        return int(i[0] if isinstance(i, tuple) else i)


class CachedLoader:
    """Batches ``store.batch(idx)`` with ``idx`` drawn exactly as ``dl`` draws its batches (its batch sampler;
    its generator, which a torch loader also draws from once per epoch). A stream (``IterableDataset``) has no
    item order to follow: its cached items come in batches of its batch size, in a new random order each epoch
    (its generator's) when ``shuffle``, else in the order the stream gave them."""

    def __init__(self, dl: DataLoader, store: FeatureStore, passes: int = 1, shuffle: bool = True):
        self.dl, self.store, self.passes = dl, store, passes
        if isinstance(dl.dataset, IterableDataset):
            self._idx = DataLoader(range(len(dl.dataset)), batch_size=dl.batch_size, shuffle=shuffle,
                                   drop_last=dl.drop_last, generator=dl.generator)
        else:
            self._idx = DataLoader(_Positions(len(dl.dataset)), batch_sampler=dl.batch_sampler, generator=dl.generator)

    @property
    def dataset(self) -> Any:
        return self.dl.dataset

    def __len__(self) -> int:
        return len(self.dl) * self.passes

    def __iter__(self) -> Iterator[tuple]:
        for _ in range(self.passes):  # `HeadFit`: several passes over the features per epoch
            for idx in self._idx:
                yield self.store.batch(idx)


def _store_targets(store: Any) -> torch.Tensor | None:
    """The first target of every item of a store (`TensorFeatures`, or a store with ``labels``), or ``None``."""
    if isinstance(store, TensorFeatures):
        return store.targets[0] if store.targets else None
    labels = getattr(store, "labels", None)
    try:
        return None if labels is None else torch.as_tensor(labels)
    except (TypeError, ValueError):
        return None


class FeatureSource:
    """How a task computes the frozen part's output for `FrozenFeatureCache` (subclass it).

    ``why_not(learn)``: ``None`` when caching gives the same training as without it, else the reason (checked
    at the start of each fit). ``features(learn, dl, shard)``: the `FeatureStore` of every item of
    ``dl.dataset`` (``shard``: this rank's `DistributedDL` under DDP, else ``None``), or `NotCached`.
    ``release()``: free what is kept for one fit only (called after each fit).
    """

    def why_not(self, learn: "Learner") -> str | None:
        return None

    def why_not_head_fit(self, learn: "Learner") -> str | None:
        """``None`` when the features may serve `HeadFit` in `fine_tune`'s frozen phase (they may then come
        from the un-augmented inputs: an approximation of the augmented training the head would otherwise
        get), else the reason. Default: when exact caching is allowed."""
        return self.why_not(learn)

    def features(self, learn: "Learner", dl: DataLoader, shard: DistributedDL | None) -> FeatureStore:
        raise NotImplementedError

    def release(self) -> None:
        pass


class FrozenFeatureCache(Callback):
    """Train the trainable part of a model on the frozen part's output, computed once (see the module
    docstring). ``source``: the task's `FeatureSource`. ``active`` and ``reason`` say what the last fit did.

    >>> from torch.utils.data import TensorDataset
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body, self.head = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)
    ...     def forward(self, x):  # raw inputs (4 values), or the body's cached output (3 values)
    ...         return self.head(self.body(x) if x.shape[1] == 4 else x)
    >>> class BodyOutput(FeatureSource):  # how this model's frozen part is run, once per item
    ...     def features(self, learn, dl, shard):
    ...         x, y = dl.dataset.tensors
    ...         with torch.no_grad():
    ...             return TensorFeatures(learn.model.body(x), (y,))
    >>> ds = TensorDataset(torch.randn(8, 4), torch.randn(8, 1))
    >>> learn = Learner(DataLoaders.from_dsets(ds, ds, bs=4, device="cpu"), Net(), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> _ = learn.model.body.requires_grad_(False)
    >>> cache = FrozenFeatureCache(BodyOutput())
    >>> learn.fit(2, cbs=cache)  # the body runs once per item; each epoch trains the head on its stored output
    >>> cache.active, cache.reason
    (True, 'active')
    >>> learn.fit(1, cbs=[cache, MixUp()])  # MixUp changes the inputs batch by batch: the cache steps aside
    >>> cache.active, cache.reason
    (False, 'MixUp changes the training inputs batch by batch')
    """

    order = -20  # after DistributedTrainer (-30), which shards learn.dl first; before everything else

    def __init__(self, source: FeatureSource):
        if not isinstance(source, FeatureSource):
            raise TypeError(f"source must be a FeatureSource (how the task computes the features), got {source!r}")
        self.source = source
        self.active, self.reason = False, "not fitted yet"
        self._loaders: dict[int, Any] = {}
        #: the `HeadFit` plan while `fine_tune`'s frozen phase runs (see `fitting_head`), else ``None``
        self.head_fit: HeadFit | None = None
        #: passes over the cached training features per epoch in the last fit; what `init_output_bias` did
        self.head_passes, self.bias_init, self.head_solved = 1, None, False
        self._bias_done = False

    @contextmanager
    def fitting_head(self, plan: HeadFit) -> Iterator["FrozenFeatureCache"]:
        """Within this block every fit is a frozen phase of `fine_tune` that follows ``plan``: the features may
        come from un-augmented inputs, each epoch makes ``plan.passes(...)`` passes over them, and the first
        such fit starts the output bias at the targets' prior."""
        self.head_fit = plan
        try:
            yield self
        finally:
            self.head_fit = None

    def _why_not(self) -> str | None:
        mixers = [type(cb).__name__ for cb in self.learn.cbs if getattr(cb, "changes_inputs", False)]
        if mixers:
            return f"{', '.join(mixers)} changes the training inputs batch by batch"
        if self.head_fit is not None:
            return self.source.why_not_head_fit(self.learn)
        return self.source.why_not(self.learn)

    def before_fit(self) -> None:
        self._loaders = {}
        self.head_passes = 1
        why = self._why_not()
        self.active, self.reason = why is None, why or "active"
        if self.active and self.head_fit is not None:
            self.reason = "active (fitting the head)"

    def _swap(self) -> None:
        dl = self.learn.dl
        inner = dl.dl if isinstance(dl, DistributedDL) else dl
        if not self.active:
            return
        if not isinstance(inner, DataLoader) or inner.batch_sampler is None:
            self.active, self.reason = False, "the loader is not a batched torch DataLoader"
            return
        key = id(dl)
        if key not in self._loaders:
            shard = dl if isinstance(dl, DistributedDL) else None
            try:
                store = self.source.features(self.learn, inner, shard)
            except NotCached as e:
                self.active, self.reason = False, str(e)
                return
            passes = 1
            if self.head_fit is not None and self.learn.training and shard is None:
                passes = self.head_fit.passes(self.learn.n_epoch - self.learn.start_epoch, len(inner))
                targets = _store_targets(store)
                if self.head_fit.init_bias and not self._bias_done and targets is not None:
                    self.bias_init = init_output_bias(self.learn.model, targets, self.learn.loss_func)
                    self._bias_done = True
                self.head_solved = False
                if self.head_fit.solver == "lbfgs" and isinstance(store, TensorFeatures) and store.targets:
                    self.head_solved = fit_output_layer(self.learn.model, store.feats, store.targets[0],
                                                        self.learn.loss_func, self.head_fit.C, self.head_fit.max_iter)
                    if self.head_solved:  # fitted to convergence: the frozen epochs make one pass each
                        passes = 1
                self.head_passes = passes
            cached: Any = CachedLoader(inner, store, passes, shuffle=self.learn.training)
            if shard is not None:  # the same sampler (set_epoch reaches it) and gathering, cached batches
                sharded = copy.copy(shard)
                sharded.dl = cached
                cached = sharded
            self._loaders[key] = cached
        self.learn.dl = self._loaders[key]
        self.learn.n_iter = len(self._loaders[key])

    def before_train(self) -> None:
        self._swap()

    def before_validate(self) -> None:
        self._swap()

    def after_fit(self) -> None:
        self._loaders = {}
        self.source.release()

    def __repr__(self) -> str:
        return f"FrozenFeatureCache({type(self.source).__name__}, active={self.active}, reason={self.reason!r})"
